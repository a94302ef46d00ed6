//! The inference thread and the two small mailboxes it shares with the streaming thread.
//!
//! The streaming thread offers frames through a one-slot mailbox (a newer frame replaces a waiting
//! one) and reads the newest published result; it only ever takes these locks briefly. The worker
//! owns the ONNX Runtime session, converts and scales each frame to the model's input, runs the
//! model, filters, publishes the result and posts it on the bus. No lock is held while it works.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;

use super::imp::CAT;
use crate::convert::FrameConverter;
use crate::detection::{Detection, DetectionFilter};
use crate::engine::{Model, ModelOptions, ModelSource};
use crate::geometry::{Fit, Placement, Region};
use crate::labels::Labels;
use crate::lock;
use crate::motion::{MotionGate, Thumbnail};
use crate::track::{Tracker, Velocity};

/// A frame handed to the worker. `buffer` shares the frame's memory until the worker has converted
/// it, which would make a downstream element that writes in place copy the frame; that is why
/// frames are only handed over when the worker will soon want one (see [`Shared::offer`]).
pub struct Job {
    pub buffer: gst::Buffer,
    pub info: gst_video::VideoInfo,
    pub seq: u64,
    pub generation: u64,
    pub filter: Arc<DetectionFilter>,
    /// Post the result on the bus (the `post-messages` property when the frame passed).
    pub post_messages: bool,
    pub tracking: super::AsyncDetectTracking,
    /// How long a lost track is kept, in seconds.
    pub track_lost_time: f64,
    /// How the frame is fitted into the model input; `None`: what the model family expects.
    pub fit: Option<Fit>,
    /// Only this part of the picture is looked at.
    pub region: Option<Arc<Region>>,
    /// Overlap above which NMS drops a box of the same class (families decoded in the element).
    pub nms_iou: f32,
    /// Motion gating: skip the model unless more than this fraction of the picture changed.
    pub motion_threshold: Option<f32>,
}

/// Track id and velocity per detection.
type TrackList = Vec<(u32, Velocity)>;

/// A finished inference.
#[derive(Debug)]
pub struct InferenceResult {
    pub seq: u64,
    /// Presentation timestamp of the frame the model saw.
    pub frame_pts: Option<gst::ClockTime>,
    pub detections: Vec<Detection>,
    /// Track id and velocity per detection, when tracking.
    pub tracks: TrackList,
    /// Move boxes forward to the time of the buffer they are attached to.
    pub predict: bool,
}

/// What the worker was told to load.
pub struct WorkerConfig {
    pub source: ModelSource,
    pub labels: Labels,
    pub options: ModelOptions,
    /// Niceness of the inference threads (see `lower_priority`).
    pub nice: i32,
    /// Where the labels came from, for messages ("labels file x.txt").
    pub labels_origin: Option<String>,
}

#[derive(Default)]
struct Mailbox {
    pending: Option<Job>,
    shutdown: bool,
    /// When the job in progress started; `None` while the worker waits for one.
    busy_since: Option<Instant>,
    /// Smoothed time per job (conversion + inference), to predict when the worker will be free.
    job_time: Option<Duration>,
    /// A model to switch to (model-location changed while running).
    reload: Option<WorkerConfig>,
}

/// What the worker does next.
enum Work {
    Frame(Job),
    Reload(WorkerConfig),
}

#[derive(Default)]
struct Outcome {
    latest: Option<Arc<InferenceResult>>,
    /// Bumped on every flush; results of jobs from an older generation are dropped.
    generation: u64,
    /// The `seq` of the last job the worker finished (published or not).
    finished_seq: u64,
    flushing: bool,
    failed: bool,
    stopped: bool,
}

/// Counters behind the read-only properties. They survive stop/start until the next `start()`.
#[derive(Default)]
pub struct Statistics {
    pub frames_in: AtomicU64,
    pub frames_inferred: AtomicU64,
    pub frames_skipped: AtomicU64,
    /// Frames the worker took but did not run the model on: the picture had not changed.
    pub frames_unchanged: AtomicU64,
    /// Smoothed conversion + inference + decoding time, in nanoseconds.
    pub inference_latency_ns: AtomicU64,
    /// Smoothed colour conversion + scaling time, in nanoseconds.
    pub preprocess_latency_ns: AtomicU64,
    completions: Mutex<VecDeque<Instant>>,
    session: Mutex<crate::engine::SessionUsers>,
}

const RATE_WINDOW: Duration = Duration::from_secs(2);

impl Statistics {
    pub fn reset(&self) {
        for counter in [
            &self.frames_in,
            &self.frames_inferred,
            &self.frames_skipped,
            &self.frames_unchanged,
            &self.inference_latency_ns,
            &self.preprocess_latency_ns,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        lock(&self.completions).clear();
    }

    /// Elements in this process sharing this one's ONNX Runtime session (0 before it is loaded).
    pub fn session_users(&self) -> usize {
        lock(&self.session).count()
    }

    /// Runs of the shared session and the frames they held (see [`crate::engine::SessionUsers::runs`]).
    pub fn session_runs(&self) -> (u64, u64) {
        lock(&self.session).runs()
    }

    /// Inferences finished per second over the last two seconds.
    pub fn inference_fps(&self) -> f64 {
        let mut completions = lock(&self.completions);
        let now = Instant::now();
        while completions
            .front()
            .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
        {
            completions.pop_front();
        }
        completions.len() as f64 / RATE_WINDOW.as_secs_f64()
    }

    fn record(&self, preprocess: Duration, total: Duration) {
        self.frames_inferred.fetch_add(1, Ordering::Relaxed);
        smooth(&self.inference_latency_ns, total);
        smooth(&self.preprocess_latency_ns, preprocess);
        lock(&self.completions).push_back(Instant::now());
    }
}

/// An exponential moving average (weight 1/8 for the new sample): what the element reports and
/// predicts with follows changes within a few samples without jumping on one outlier.
pub fn smoothed(previous: Option<Duration>, sample: Duration) -> Duration {
    previous.map_or(sample, |previous| (previous * 7 + sample) / 8)
}

/// [`smoothed`] on a statistic kept in nanoseconds, where 0 means "no sample yet".
fn smooth(target: &AtomicU64, sample: Duration) {
    let previous = Duration::from_nanos(target.load(Ordering::Relaxed));
    let next = smoothed(Some(previous).filter(|p| !p.is_zero()), sample);
    target.store(next.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
}

/// See [`Shared::snapshot`].
pub struct Snapshot {
    pub latest: Option<Arc<InferenceResult>>,
    pub generation: u64,
    pub failed: bool,
}

/// What the streaming thread learns when it waits for a result in sync mode.
pub enum WaitOutcome {
    Done(Option<Arc<InferenceResult>>),
    Flushing,
    Failed,
}

#[derive(Default)]
pub struct Shared {
    mailbox: Mutex<Mailbox>,
    /// Other elements use the same model instance (kept up to date by the worker).
    session_shared: AtomicBool,
    job_posted: Condvar,
    outcome: Mutex<Outcome>,
    result_published: Condvar,
    pub stats: Arc<Statistics>,
}

impl Shared {
    pub fn new(stats: Arc<Statistics>) -> Self {
        Shared {
            stats,
            ..Default::default()
        }
    }

    /// What the streaming thread needs per buffer, in one short lock: the newest result, the flush
    /// generation to stamp a new job with, and whether the worker has failed.
    pub fn snapshot(&self) -> Snapshot {
        let outcome = lock(&self.outcome);
        Snapshot {
            latest: outcome.latest.clone(),
            generation: outcome.generation,
            failed: outcome.failed,
        }
    }

    /// Offers a frame in async mode. It goes into the slot if the worker is idle, if an older frame
    /// waits there (it is replaced), or if the running job should end before the next frame arrives
    /// (`frame_interval`). Otherwise the frame is not shared with the worker at all, so downstream
    /// elements that write in place are not forced to copy it. Returns whether the frame was taken.
    pub fn offer(&self, make_job: impl FnOnce() -> Job, frame_interval: Option<Duration>) -> bool {
        let mut mailbox = lock(&self.mailbox);
        if mailbox.shutdown {
            return false;
        }
        let wanted_soon = match (mailbox.busy_since, mailbox.job_time, frame_interval) {
            (None, _, _) => true,
            (Some(since), Some(job_time), Some(interval)) => {
                job_time.saturating_sub(since.elapsed()) <= interval + interval / 2
            }
            _ => true,
        };
        // On a session shared with other streams the wait in its queue cannot be predicted, and
        // a frame missing when the turn comes leaves the session idle (measured: 5 % fewer
        // inferences with eight cameras): always keep one ready.
        let wanted_soon = wanted_soon || self.session_shared.load(Ordering::Relaxed);
        if mailbox.pending.is_none() && !wanted_soon {
            drop(mailbox);
            self.stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let replaced = mailbox.pending.replace(make_job());
        drop(mailbox);
        self.job_posted.notify_one();
        if replaced.is_some() {
            self.stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
        }
        // A replaced job's buffer is released here, after the lock.
        drop(replaced);
        true
    }

    /// Hands a frame over in sync mode and waits until the worker has processed it (or a flush,
    /// failure or shutdown makes waiting pointless).
    pub fn process_and_wait(&self, job: Job) -> WaitOutcome {
        let seq = job.seq;
        {
            let mut mailbox = lock(&self.mailbox);
            if mailbox.shutdown {
                return WaitOutcome::Flushing;
            }
            mailbox.pending = Some(job);
        }
        self.job_posted.notify_one();
        let mut outcome = lock(&self.outcome);
        loop {
            if outcome.flushing || outcome.stopped {
                return WaitOutcome::Flushing;
            }
            if outcome.failed {
                return WaitOutcome::Failed;
            }
            if outcome.finished_seq >= seq {
                let latest = outcome.latest.clone().filter(|r| r.seq == seq);
                return WaitOutcome::Done(latest);
            }
            outcome = self
                .result_published
                .wait(outcome)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// FLUSH_START: forget results and the waiting frame; a sync-mode wait returns.
    pub fn start_flush(&self) {
        {
            let mut outcome = lock(&self.outcome);
            outcome.flushing = true;
            outcome.generation += 1;
            outcome.latest = None;
        }
        self.result_published.notify_all();
        let dropped = lock(&self.mailbox).pending.take();
        if dropped.is_some() {
            self.stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// FLUSH_STOP: frames may flow again.
    pub fn stop_flush(&self) {
        lock(&self.outcome).flushing = false;
    }

    /// Asks the worker to finish; wakes everything that waits.
    pub fn shut_down(&self) {
        let dropped = {
            let mut mailbox = lock(&self.mailbox);
            mailbox.shutdown = true;
            mailbox.pending.take()
        };
        drop(dropped);
        self.job_posted.notify_all();
        lock(&self.outcome).stopped = true;
        self.result_published.notify_all();
    }

    fn next_work(&self) -> Option<Work> {
        let mut mailbox = lock(&self.mailbox);
        loop {
            if mailbox.shutdown {
                return None;
            }
            if let Some(config) = mailbox.reload.take() {
                return Some(Work::Reload(config));
            }
            if let Some(job) = mailbox.pending.take() {
                mailbox.busy_since = Some(Instant::now());
                return Some(Work::Frame(job));
            }
            mailbox = self.job_posted.wait(mailbox).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Asks the worker to load another model between frames; the current one keeps running until
    /// the new one is ready, and stays if the new one fails.
    pub fn request_reload(&self, config: WorkerConfig) {
        let replaced = lock(&self.mailbox).reload.replace(config);
        drop(replaced);
        self.job_posted.notify_one();
    }

    /// A new model's first timing replaces what was learnt about the previous one.
    fn seed_estimate(&self, job_time: Duration) {
        lock(&self.mailbox).job_time = Some(job_time);
        let nanos = job_time.as_nanos().min(u64::MAX as u128) as u64;
        self.stats.inference_latency_ns.store(nanos, Ordering::Relaxed);
    }

    fn job_done(&self, elapsed: Duration) {
        let mut mailbox = lock(&self.mailbox);
        mailbox.busy_since = None;
        mailbox.job_time = Some(smoothed(mailbox.job_time, elapsed));
    }

    /// Publishes a result unless a flush happened since its frame was taken; always records that
    /// the job finished so a sync-mode wait ends.
    fn publish(&self, generation: u64, result: InferenceResult) -> bool {
        let published = {
            let mut outcome = lock(&self.outcome);
            outcome.finished_seq = outcome.finished_seq.max(result.seq);
            let current = outcome.generation == generation;
            if current {
                outcome.latest = Some(Arc::new(result));
            }
            current
        };
        self.result_published.notify_all();
        published
    }

    /// Records that a job ended without a result (its frame could not be read).
    fn finish_without_result(&self, seq: u64) {
        {
            let mut outcome = lock(&self.outcome);
            outcome.finished_seq = outcome.finished_seq.max(seq);
        }
        self.result_published.notify_all();
    }

    fn fail(&self) {
        lock(&self.outcome).failed = true;
        self.result_published.notify_all();
        let dropped = lock(&self.mailbox).pending.take();
        drop(dropped);
    }
}

/// Spawns the inference thread.
pub fn spawn(
    element: &super::AsyncDetect,
    shared: Arc<Shared>,
    config: WorkerConfig,
    post_latency: bool,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak = element.downgrade();
    std::thread::Builder::new()
        .name("asyncdetect-infer".into())
        .spawn(move || {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| run(&weak, &shared, config, post_latency)));
            if let Err(payload) = outcome {
                let reason = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                if let Some(element) = weak.upgrade() {
                    gst::element_error!(
                        element,
                        gst::LibraryError::Failed,
                        ("The inference thread crashed: {}", reason)
                    );
                }
                shared.fail();
            }
        })
}

/// Makes this thread, and the ONNX Runtime threads it creates afterwards (they inherit it), yield
/// the CPU to the video: without this, waking the worker for a frame let it and its pool preempt
/// the streaming thread on a 2-core machine for a whole inference (measured: 5 ms p99 per buffer
/// at 1080p30). Never raises priority; a failure only costs smoothness.
fn lower_priority(nice: i32) -> Result<i32, std::io::Error> {
    // SAFETY: plain system calls on this thread's own id; no memory is passed.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        let error = std::io::Error::last_os_error();
        if current == -1 && error.raw_os_error() != Some(0) {
            return Err(error);
        }
        let target = current.max(nice);
        if libc::setpriority(libc::PRIO_PROCESS, tid, target) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(target)
    }
}

fn run(weak: &glib::WeakRef<super::AsyncDetect>, shared: &Shared, config: WorkerConfig, post_latency: bool) {
    let load_start = Instant::now();
    let niceness = lower_priority(config.nice);
    if let Some(element) = weak.upgrade() {
        match &niceness {
            Ok(nice) => gst::debug!(CAT, obj = element, "Inference threads run at nice {nice}"),
            Err(e) => gst::warning!(CAT, obj = element, "Could not lower the inference priority: {e}"),
        }
    }
    let source = config.source.clone();
    let mut labels_origin = config.labels_origin.clone();
    let mut model = match Model::load(&config.source, config.labels, &config.options) {
        Ok(model) => model,
        Err(e) => {
            // Post before failing: the streaming thread returns an error flow once it sees the
            // failure, and the application should read this message, not a generic one.
            if let Some(element) = weak.upgrade() {
                let kind = match &e {
                    crate::engine::EngineError::Runtime(_) => gst::LibraryError::Init,
                    _ => gst::LibraryError::Settings,
                };
                gst::element_error!(element, kind, ("{}", e));
            }
            shared.fail();
            return;
        }
    };
    let mut converter = model_ready(weak, shared, &mut model, &source, load_start, post_latency);
    let mut warned_bad_frame = false;
    let mut warned_unnamed = false;
    let mut tracker = Tracker::default();
    let mut tracker_generation = 0;
    let epoch = Instant::now();
    let mut motion_gate = MotionGate::default();
    // What the gate compared against was seen through this placement and flush generation.
    let mut gate_context: Option<(Placement, u64)> = None;

    while let Some(work) = shared.next_work() {
        let job = match work {
            Work::Frame(job) => job,
            Work::Reload(config) => {
                let load_start = Instant::now();
                match Model::load(&config.source, config.labels, &config.options) {
                    Ok(new_model) => {
                        model = new_model;
                        labels_origin = config.labels_origin.clone();
                        warned_unnamed = false;
                        converter =
                            model_ready(weak, shared, &mut model, &config.source, load_start, post_latency);
                        motion_gate.reset();
                    }
                    Err(e) => {
                        if let Some(element) = weak.upgrade() {
                            gst::element_warning!(
                                element,
                                gst::LibraryError::Settings,
                                ("Keeping the current model: {}", e)
                            );
                        }
                    }
                }
                continue;
            }
        };
        let started = Instant::now();
        shared
            .session_shared
            .store(model.session_users().count() > 1, Ordering::Relaxed);
        if let Some(e) = model.take_lane_error()
            && let Some(element) = weak.upgrade()
        {
            gst::element_warning!(
                element,
                gst::LibraryError::Settings,
                (
                    "Could not open another inference lane, running fewer frames at once: {}",
                    e
                )
            );
        }
        let (seq, generation, frame_pts, filter, post_messages, tracking, track_lost_time) = (
            job.seq,
            job.generation,
            job.buffer.pts(),
            job.filter.clone(),
            job.post_messages,
            job.tracking,
            job.track_lost_time,
        );
        let input = model.input();
        let placement = Placement::new(
            job.info.width(),
            job.info.height(),
            job.region.as_ref().map(|r| &r.bounds),
            input.width as u32,
            input.height as u32,
            job.fit.unwrap_or_else(|| model.decoder().preferred_fit()),
        );
        let (input_width, input_height) = (input.width, input.height);
        let region = job.region.clone();
        let converted = converter.convert(job.buffer, &job.info, &placement);
        let preprocess_time = started.elapsed();
        let (motion_threshold, nms_iou) = (job.motion_threshold, job.nms_iou);
        if let (Some(threshold), Ok((frame, stride))) = (motion_threshold, &converted) {
            if gate_context != Some((placement, generation)) {
                motion_gate.reset();
                gate_context = Some((placement, generation));
            }
            let plane = frame.plane_data(0).unwrap_or(&[]);
            let thumbnail = Thumbnail::from_packed_rgb(plane, input_width, input_height, *stride);
            let moved = motion_gate.should_infer(thumbnail, threshold);
            // The result published last (none after a flush: then the model runs).
            let latest = if moved { None } else { shared.snapshot().latest };
            if let Some(latest) = latest {
                // Nothing moved: the last result holds for this frame too, standing still.
                shared.stats.frames_unchanged.fetch_add(1, Ordering::Relaxed);
                shared.job_done(started.elapsed());
                let tracks = latest
                    .tracks
                    .iter()
                    .map(|(id, _)| (*id, Velocity::default()))
                    .collect();
                shared.publish(
                    generation,
                    InferenceResult {
                        seq,
                        frame_pts,
                        detections: latest.detections.clone(),
                        tracks,
                        predict: false,
                    },
                );
                continue;
            }
        }
        model.set_nms_iou(nms_iou);
        let detections = match converted {
            Ok((frame, stride)) => {
                let plane = frame.plane_data(0).unwrap_or(&[]);
                match model.detect(plane, stride) {
                    Ok(mut detections) => {
                        for detection in &mut detections {
                            detection.bbox = placement.to_frame(&detection.bbox);
                        }
                        if let Some(region) = &region {
                            detections.retain(|d| region.contains(&d.bbox));
                        }
                        if !warned_unnamed
                            && let Some(origin) = &labels_origin
                            && let Some(unnamed) = detections
                                .iter()
                                .find(|d| model.labels().get(d.class_id).is_none())
                        {
                            // The labels file is shorter than the model's classes: say so once.
                            warned_unnamed = true;
                            if let Some(element) = weak.upgrade() {
                                gst::element_warning!(
                                    element,
                                    gst::LibraryError::Settings,
                                    (
                                        "{} names {} classes but the model reported class {}: it is labelled by its id",
                                        origin,
                                        model.labels().len(),
                                        unnamed.class_id
                                    )
                                );
                            }
                        }
                        Some(filter.apply(detections))
                    }
                    Err(e) => {
                        if let Some(element) = weak.upgrade() {
                            gst::element_error!(
                                element,
                                gst::StreamError::Failed,
                                ("Inference failed: {}", e)
                            );
                        }
                        shared.fail();
                        return;
                    }
                }
            }
            Err(reason) => {
                // One bad frame does not stop detection; tell the application once.
                if !warned_bad_frame && let Some(element) = weak.upgrade() {
                    gst::element_warning!(
                        element,
                        gst::StreamError::Format,
                        ("Skipping a frame: {}", reason)
                    );
                }
                warned_bad_frame = true;
                None
            }
        };
        let elapsed = started.elapsed();
        shared.job_done(elapsed);
        let Some(detections) = detections else {
            // Keep showing the previous result; only let a sync-mode wait end.
            shared.finish_without_result(seq);
            continue;
        };
        shared.stats.record(preprocess_time, elapsed);
        let (detections, tracks) = if tracking == super::AsyncDetectTracking::None {
            (detections, Vec::new())
        } else {
            // A flush or seek may show another scene: start over.
            if generation != tracker_generation {
                tracker.reset();
                tracker_generation = generation;
            }
            tracker.lost_after = track_lost_time;
            let at = frame_pts.map_or_else(|| epoch.elapsed().as_secs_f64(), |pts| pts.seconds_f64());
            tracker
                .update(detections, at)
                .into_iter()
                .map(|t| (t.detection, (t.track_id, t.velocity)))
                .unzip()
        };
        let predict = tracking == super::AsyncDetectTracking::Predict;
        let message = weak
            .upgrade()
            .filter(|_| post_messages)
            .map(|element| result_message(&element, frame_pts, elapsed, &detections));
        let published = shared.publish(
            generation,
            InferenceResult {
                seq,
                frame_pts,
                detections,
                tracks,
                predict,
            },
        );
        if let (true, Some((element, message))) = (published, message) {
            gst::trace!(
                CAT,
                obj = element,
                "Inference on frame {} took {:?}",
                seq,
                elapsed
            );
            let _ = element.post_message(message);
        }
    }
}

/// Logs a freshly loaded model, seeds the latency estimate with one timed run on a blank frame
/// (sync mode reports it in the LATENCY query; async mode uses it to time hand-overs) and returns
/// the converter for its input.
fn model_ready(
    weak: &glib::WeakRef<super::AsyncDetect>,
    shared: &Shared,
    model: &mut Model,
    source: &ModelSource,
    load_start: Instant,
    post_latency: bool,
) -> FrameConverter {
    *lock(&shared.stats.session) = model.session_users();
    let input = model.input().clone();
    let blank = vec![0u8; input.tensor_len()];
    if let Ok((_, took)) = model.detect_timed(&blank, input.width * 3) {
        shared.seed_estimate(took);
    }
    if let Some(element) = weak.upgrade() {
        gst::info!(
            CAT,
            obj = element,
            "Loaded {} in {:?}: input `{}` {:?} {:?} {}x{} {:?}, decoder {}",
            source,
            load_start.elapsed(),
            input.name,
            input.layout,
            input.element_type,
            input.width,
            input.height,
            input.channel_order,
            model.decoder().name()
        );
        if post_latency {
            // Sync mode's latency is now known: let the pipeline ask again.
            let _ = element.post_message(gst::message::Latency::builder().src(&element).build());
        }
    }
    FrameConverter::new(input.channel_order, input.width as u32, input.height as u32)
}

/// The `detection` structure used both in ROI metas and bus messages (DL Streamer's layout).
pub fn detection_structure(detection: &Detection) -> gst::Structure {
    let b = detection.bbox;
    gst::Structure::builder("detection")
        .field("label_id", detection.class_id)
        .field("label", detection.label.as_str())
        .field("confidence", detection.confidence as f64)
        .field("x_min", b.x_min as f64)
        .field("y_min", b.y_min as f64)
        .field("x_max", b.x_max as f64)
        .field("y_max", b.y_max as f64)
        .build()
}

fn result_message(
    element: &super::AsyncDetect,
    frame_pts: Option<gst::ClockTime>,
    latency: Duration,
    detections: &[Detection],
) -> (super::AsyncDetect, gst::Message) {
    let list = gst::List::new(detections.iter().map(|d| detection_structure(d).to_send_value()));
    let mut structure = gst::Structure::builder("asyncdetect")
        .field(
            "inference-latency",
            latency.as_nanos().min(u64::MAX as u128) as u64,
        )
        .field("detections", list)
        .build();
    if let Some(pts) = frame_pts {
        structure.set("timestamp", pts.nseconds());
    }
    let message = gst::message::Element::builder(structure).src(element).build();
    (element.clone(), message)
}
