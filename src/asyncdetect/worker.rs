//! The inference thread, its frame preparer, and the two small mailboxes they share with the
//! streaming thread.
//!
//! The streaming thread offers frames through a one-slot mailbox (a newer frame replaces a waiting
//! one) and reads the newest published result; it only ever takes these locks briefly. A preparer
//! thread converts and scales the newest frame to the model's input, timed to finish as the running
//! inference ends, so conversion overlaps the model instead of adding to it. The inference thread
//! owns the ONNX Runtime session, runs the model on the prepared frame, filters, publishes the
//! result and posts it on the bus. No lock is held while either works.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;

use super::imp::CAT;
use crate::convert::{ConvertedFrame, FrameConverter};
use crate::detection::{Detection, DetectionFilter};
use crate::engine::{EngineError, Model, ModelOptions, ModelSource, RunCanceller};
use crate::geometry::{Fit, Placement, Region};
use crate::labels::Labels;
use crate::lock;
use crate::motion::{MotionGate, Thumbnail};
use crate::priority::lower_priority;
use crate::track::{Tracker, Velocity};

/// A frame handed to the worker. `buffer` shares the frame's memory until the worker has converted
/// it, which would make a downstream element that writes in place copy the frame; that is why
/// frames are only handed over when the worker will soon want one (see [`Shared::offer`]).
pub struct Job {
    /// Taken (and released) by the preparer once converted.
    pub buffer: Option<gst::Buffer>,
    /// The frame's presentation timestamp.
    pub pts: Option<gst::ClockTime>,
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

/// What the preparer converts frames to: the loaded model's input.
#[derive(Debug, Clone, Copy, PartialEq)]
struct InputTarget {
    channel_order: crate::preprocess::ChannelOrder,
    width: u32,
    height: u32,
    /// How the model family wants frames fitted when the element does not say.
    preferred_fit: Fit,
    /// Bumped for every model loaded: a frame prepared for an earlier one is not used.
    version: u64,
}

/// A frame converted to the model's input, waiting for the inference thread.
struct Prepared {
    job: Job,
    placement: Placement,
    converted: Result<(ConvertedFrame, usize), String>,
    input_version: u64,
    convert_time: Duration,
}

#[derive(Default)]
struct Mailbox {
    pending: Option<Job>,
    /// Converted ahead by the preparer.
    prepared: Option<Box<Prepared>>,
    /// The preparer is converting a frame.
    preparing: bool,
    shutdown: bool,
    /// The inference thread or the preparer has ended: the other stops too.
    worker_gone: bool,
    /// When the inference in progress started; `None` while the inference thread waits.
    inference_since: Option<Instant>,
    /// Smoothed time per inference (model and decoding) and per conversion, to predict when the
    /// next frame is wanted.
    inference_time: Option<Duration>,
    convert_time: Option<Duration>,
    /// `None` until a model is loaded.
    input: Option<InputTarget>,
    /// A model to switch to (model-location changed while running).
    reload: Option<WorkerConfig>,
}

impl Mailbox {
    /// How long before the running inference's predicted end the preparer starts: twice a
    /// conversion, for the estimates' error and the hand-over's wake-up (measured with 1.25x: the
    /// model waited 0.15 to 0.3 ms per frame; with 2x, 0.02 ms).
    fn convert_lead(&self) -> Duration {
        self.convert_time.unwrap_or_default() * 2
    }

    /// When the preparer should start converting the next frame so that it is ready as the running
    /// inference ends (`None`: now). Starting earlier would hand the model an older frame.
    fn prepare_from(&self) -> Option<Instant> {
        let end = self.inference_since? + self.inference_time?;
        end.checked_sub(self.convert_lead())
    }

    /// When a new frame will next be taken from the slot.
    fn frame_wanted_at(&self, now: Instant) -> Instant {
        if self.prepared.is_some() || self.preparing {
            // One frame is ready or nearly: the next is wanted once that one's inference runs.
            let start = self
                .inference_since
                .zip(self.inference_time)
                .map_or(now, |(since, time)| since + time);
            let lead_in = self
                .inference_time
                .unwrap_or_default()
                .saturating_sub(self.convert_lead());
            (start + lead_in).max(now)
        } else {
            self.prepare_from().map_or(now, |at| at.max(now))
        }
    }
}

/// What the inference thread does next.
enum Work {
    Frame(Box<Prepared>),
    Reload(Box<WorkerConfig>),
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
        forget_before_window(&mut completions, Instant::now());
        completions.len() as f64 / RATE_WINDOW.as_secs_f64()
    }

    /// One inference finished; `total` is its conversion, model and decoding time.
    fn record(&self, total: Duration) {
        self.frames_inferred.fetch_add(1, Ordering::Relaxed);
        smooth(&self.inference_latency_ns, total);
        let now = Instant::now();
        let mut completions = lock(&self.completions);
        // Pruned here too, not only when someone reads `inference-fps`: the list then never holds
        // more than one window of completions, however long the element runs.
        forget_before_window(&mut completions, now);
        completions.push_back(now);
    }
}

/// Drops the completion times older than [`RATE_WINDOW`] before `now`.
fn forget_before_window(completions: &mut VecDeque<Instant>, now: Instant) {
    while completions
        .front()
        .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
    {
        completions.pop_front();
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
    /// Wakes the preparer: a frame came, a prepared one was taken, an inference ended, a model
    /// was loaded, or everything stops.
    job_posted: Condvar,
    /// Wakes the inference thread: a frame is prepared, a reload is asked, or everything stops.
    frame_prepared: Condvar,
    outcome: Mutex<Outcome>,
    result_published: Condvar,
    pub stats: Arc<Statistics>,
    /// Interrupts the running inference when stopping, flushing or changing the model, so none
    /// of them waits for the model to finish a frame.
    frame_canceller: Arc<RunCanceller>,
    /// Interrupts a model's warm-up run when stopping or when a newer model is asked for (a
    /// flush leaves a model change in progress alone).
    load_canceller: Arc<RunCanceller>,
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

    /// Offers a frame in async mode. It goes into the slot if an older frame waits there (it is
    /// replaced) or if the preparer will want one before the next frame arrives (`frame_interval`).
    /// Otherwise the frame is not shared with the worker at all, so downstream elements that write
    /// in place are not forced to copy it. Returns whether the frame was taken.
    pub fn offer(&self, make_job: impl FnOnce() -> Job, frame_interval: Option<Duration>) -> bool {
        let mut mailbox = lock(&self.mailbox);
        if mailbox.shutdown {
            return false;
        }
        let wanted_soon = frame_interval.is_none_or(|interval| {
            let now = Instant::now();
            mailbox.frame_wanted_at(now) <= now + interval + interval / 2
        });
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
        if replaced.is_some() {
            // The preparer already knows a frame waits and takes the newest when its moment
            // comes; waking it for each newer one would only cost the streaming thread a system call.
            self.stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.job_posted.notify_one();
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
        // Its result would be dropped anyway (older generation): do not wait for it.
        self.frame_canceller.cancel();
        let dropped = {
            let mut mailbox = lock(&self.mailbox);
            (mailbox.pending.take(), mailbox.prepared.take())
        };
        let count = u64::from(dropped.0.is_some()) + u64::from(dropped.1.is_some());
        self.stats.frames_skipped.fetch_add(count, Ordering::Relaxed);
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
            (mailbox.pending.take(), mailbox.prepared.take())
        };
        drop(dropped);
        self.job_posted.notify_all();
        self.frame_prepared.notify_all();
        lock(&self.outcome).stopped = true;
        self.result_published.notify_all();
        self.frame_canceller.cancel();
        self.load_canceller.cancel();
    }

    /// The inference thread's next work: a reload, or a prepared frame (its inference starts).
    fn next_work(&self) -> Option<Work> {
        let mut mailbox = lock(&self.mailbox);
        loop {
            if mailbox.shutdown || mailbox.worker_gone {
                return None;
            }
            if let Some(config) = mailbox.reload.take() {
                return Some(Work::Reload(Box::new(config)));
            }
            if let Some(prepared) = mailbox.prepared.take() {
                mailbox.inference_since = Some(Instant::now());
                drop(mailbox);
                self.job_posted.notify_one();
                return Some(Work::Frame(prepared));
            }
            mailbox = self
                .frame_prepared
                .wait(mailbox)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The preparer's next frame and what to convert it to: the waiting frame, once a model is
    /// loaded, no prepared frame waits, and the running inference is about to end.
    fn next_to_prepare(&self) -> Option<(Job, InputTarget)> {
        let mut mailbox = lock(&self.mailbox);
        loop {
            if mailbox.shutdown || mailbox.worker_gone {
                return None;
            }
            if let (true, true, Some(target)) = (
                mailbox.pending.is_some(),
                mailbox.prepared.is_none(),
                mailbox.input,
            ) {
                let wait = mailbox
                    .prepare_from()
                    .and_then(|at| at.checked_duration_since(Instant::now()))
                    .filter(|wait| !wait.is_zero());
                match wait {
                    Some(wait) => {
                        mailbox = self
                            .job_posted
                            .wait_timeout(mailbox, wait)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    None => {
                        let job = mailbox.pending.take()?;
                        mailbox.preparing = true;
                        return Some((job, target));
                    }
                }
                continue;
            }
            mailbox = self.job_posted.wait(mailbox).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn frame_ready(&self, prepared: Box<Prepared>) {
        {
            let mut mailbox = lock(&self.mailbox);
            mailbox.preparing = false;
            mailbox.convert_time = Some(smoothed(mailbox.convert_time, prepared.convert_time));
            if !mailbox.shutdown {
                mailbox.prepared = Some(prepared);
            }
        }
        self.frame_prepared.notify_one();
    }

    /// The inference thread or the preparer ends; the other one follows.
    fn worker_gone(&self) {
        lock(&self.mailbox).worker_gone = true;
        self.job_posted.notify_all();
        self.frame_prepared.notify_all();
    }

    /// Asks the worker to load another model between frames; the current one keeps running until
    /// the new one is ready, and stays if the new one fails.
    pub fn request_reload(&self, config: WorkerConfig) {
        let replaced = lock(&self.mailbox).reload.replace(config);
        drop(replaced);
        self.frame_prepared.notify_one();
        // The new model is wanted now: the running frame (or a load still warming up) stops.
        self.frame_canceller.cancel();
        self.load_canceller.cancel();
    }

    /// A new model: the preparer converts for its input from now on, and its first timing
    /// replaces what was learnt about the previous one.
    fn model_loaded(&self, input: InputTarget, inference_time: Option<Duration>) {
        {
            let mut mailbox = lock(&self.mailbox);
            mailbox.input = Some(input);
            mailbox.inference_time = inference_time;
        }
        self.job_posted.notify_one();
        if let Some(time) = inference_time {
            let nanos = time.as_nanos().min(u64::MAX as u128) as u64;
            self.stats.inference_latency_ns.store(nanos, Ordering::Relaxed);
        }
    }

    /// The inference ended; `model_time` is what the model took when it ran.
    fn job_done(&self, model_time: Option<Duration>) {
        {
            let mut mailbox = lock(&self.mailbox);
            mailbox.inference_since = None;
            if let Some(time) = model_time {
                mailbox.inference_time = Some(smoothed(mailbox.inference_time, time));
            }
        }
        self.job_posted.notify_one();
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
        let dropped = {
            let mut mailbox = lock(&self.mailbox);
            (mailbox.pending.take(), mailbox.prepared.take())
        };
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
                report_crash(&weak, &shared, "inference", payload.as_ref());
            }
        })
}

/// The inference thread's body: starts the preparer beside it and runs the model until shutdown.
fn run(weak: &glib::WeakRef<super::AsyncDetect>, shared: &Shared, config: WorkerConfig, post_latency: bool) {
    /// Stops the preparer however the inference loop ends, unwinding included.
    struct StopPreparer<'a>(&'a Shared);
    impl Drop for StopPreparer<'_> {
        fn drop(&mut self) {
            self.0.worker_gone();
        }
    }

    let nice = config.nice;
    std::thread::scope(|scope| {
        let preparer = std::thread::Builder::new()
            .name("asyncdetect-prep".into())
            .spawn_scoped(scope, || {
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| prepare(shared, nice)));
                if let Err(payload) = outcome {
                    report_crash(weak, shared, "frame preparer", payload.as_ref());
                }
                shared.worker_gone();
            });
        if let Err(e) = preparer {
            fail_with(
                weak,
                shared,
                gst::CoreError::Thread,
                format!("Could not start the frame preparer thread: {e}"),
            );
            return;
        }
        let _stop_preparer = StopPreparer(shared);
        infer(weak, shared, config, post_latency);
    });
}

/// The preparer's loop: converts the newest frame to the model's input just before the inference
/// thread will want it, at the inference threads' niceness.
fn prepare(shared: &Shared, nice: i32) {
    // Failure is reported by the inference thread, which tries the same.
    let _ = lower_priority(nice);
    let mut converter: Option<(InputTarget, FrameConverter)> = None;
    while let Some((mut job, target)) = shared.next_to_prepare() {
        let started = Instant::now();
        let frame_converter = match &mut converter {
            Some((made_for, frame_converter)) if *made_for == target => frame_converter,
            slot => {
                let made = FrameConverter::new(target.channel_order, target.width, target.height);
                &mut slot.insert((target, made)).1
            }
        };
        let placement = Placement::new(
            job.info.width(),
            job.info.height(),
            job.region.as_ref().map(|r| &r.bounds),
            target.width,
            target.height,
            job.fit.unwrap_or(target.preferred_fit),
        );
        let converted = match job.buffer.take() {
            Some(buffer) => frame_converter.convert(buffer, &job.info, &placement),
            None => Err("the frame was already converted".into()),
        };
        shared.frame_ready(Box::new(Prepared {
            job,
            placement,
            converted,
            input_version: target.version,
            convert_time: started.elapsed(),
        }));
    }
}

/// Posts an element error, then marks the worker failed. In that order: the streaming thread
/// returns an error flow once it sees the failure, and the application should read this message,
/// not a generic one.
fn fail_with<T: gst::MessageErrorDomain>(
    weak: &glib::WeakRef<super::AsyncDetect>,
    shared: &Shared,
    kind: T,
    message: String,
) {
    if let Some(element) = weak.upgrade() {
        gst::element_error!(element, kind, ("{}", message));
    }
    shared.fail();
}

/// Fails the worker for a panic on one of its threads.
fn report_crash(
    weak: &glib::WeakRef<super::AsyncDetect>,
    shared: &Shared,
    thread: &str,
    payload: &(dyn std::any::Any + Send),
) {
    let reason = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    fail_with(
        weak,
        shared,
        gst::LibraryError::Failed,
        format!("The {thread} thread crashed: {reason}"),
    );
}

fn infer(
    weak: &glib::WeakRef<super::AsyncDetect>,
    shared: &Shared,
    config: WorkerConfig,
    post_latency: bool,
) {
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
    let load = || {
        Model::load(
            &config.source,
            config.labels.clone(),
            &config.options,
            &shared.load_canceller,
            &shared.frame_canceller,
        )
    };
    // A newer model asked for during the warm-up interrupts it: this one is still needed until
    // the newer one loads, so it loads again (the loop below then applies the change).
    let mut loaded = load();
    while matches!(loaded, Err(EngineError::Cancelled)) && !lock(&shared.mailbox).shutdown {
        loaded = load();
    }
    let mut model = match loaded {
        Ok(model) => model,
        // Stopped while warming up.
        Err(EngineError::Cancelled) => return,
        Err(e) => {
            let kind = match &e {
                EngineError::Runtime(_) => gst::LibraryError::Init,
                _ => gst::LibraryError::Settings,
            };
            fail_with(weak, shared, kind, e.to_string());
            return;
        }
    };
    let mut input_version = 1;
    model_ready(
        weak,
        shared,
        &mut model,
        &source,
        load_start,
        post_latency,
        input_version,
    );
    let mut warned_bad_frame = false;
    let mut warned_unnamed = false;
    let mut tracker = Tracker::default();
    let mut tracker_generation = 0;
    let epoch = Instant::now();
    let mut motion_gate = MotionGate::default();
    // What the gate compared against was seen through this placement and flush generation.
    let mut gate_context: Option<(Placement, u64)> = None;

    while let Some(work) = shared.next_work() {
        let prepared = match work {
            Work::Frame(prepared) => prepared,
            Work::Reload(config) => {
                let config = *config;
                let load_start = Instant::now();
                match Model::load(
                    &config.source,
                    config.labels,
                    &config.options,
                    &shared.load_canceller,
                    &shared.frame_canceller,
                ) {
                    Ok(new_model) => {
                        model = new_model;
                        labels_origin = config.labels_origin.clone();
                        warned_unnamed = false;
                        input_version += 1;
                        model_ready(
                            weak,
                            shared,
                            &mut model,
                            &config.source,
                            load_start,
                            post_latency,
                            input_version,
                        );
                        motion_gate.reset();
                    }
                    // Interrupted by a stop or a newer model: nothing to report.
                    Err(EngineError::Cancelled) => {}
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
        let Prepared {
            job,
            placement,
            converted,
            input_version: prepared_for,
            convert_time: preprocess_time,
        } = *prepared;
        let (seq, generation, frame_pts, filter, post_messages, tracking, track_lost_time) = (
            job.seq,
            job.generation,
            job.pts,
            job.filter.clone(),
            job.post_messages,
            job.tracking,
            job.track_lost_time,
        );
        if prepared_for != input_version {
            // Converted for the model used before a reload.
            shared.job_done(None);
            shared.finish_without_result(seq);
            continue;
        }
        let (input_width, input_height) = (model.input().width, model.input().height);
        let region = job.region.clone();
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
                shared.job_done(None);
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
                    // Interrupted by a flush, a stop or a new model: no result for this frame.
                    Err(EngineError::Cancelled) => None,
                    Err(e) => {
                        fail_with(
                            weak,
                            shared,
                            gst::StreamError::Failed,
                            format!("Inference failed: {e}"),
                        );
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
        let model_time = started.elapsed();
        shared.job_done(Some(model_time));
        let elapsed = preprocess_time + model_time;
        let Some(detections) = detections else {
            // Keep showing the previous result; only let a sync-mode wait end.
            shared.finish_without_result(seq);
            continue;
        };
        shared.stats.record(elapsed);
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

/// Logs a freshly loaded model, seeds the latency estimate with its warm-up run (sync mode reports
/// it in the LATENCY query; async mode uses it to time hand-overs) and tells the preparer what to
/// convert frames to.
fn model_ready(
    weak: &glib::WeakRef<super::AsyncDetect>,
    shared: &Shared,
    model: &mut Model,
    source: &ModelSource,
    load_start: Instant,
    post_latency: bool,
    input_version: u64,
) {
    *lock(&shared.stats.session) = model.session_users();
    let input = model.input().clone();
    let took = Some(model.first_run_time());
    shared.model_loaded(
        InputTarget {
            channel_order: input.channel_order,
            width: input.width as u32,
            height: input.height as u32,
            preferred_fit: model.decoder().preferred_fit(),
            version: input_version,
        },
        took,
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn completions_stay_within_the_rate_window_without_readers() {
        let stats = Statistics::default();
        let now = Instant::now();
        if let Some(long_ago) = now.checked_sub(RATE_WINDOW * 3) {
            lock(&stats.completions).extend(std::iter::repeat_n(long_ago, 1000));
        }
        stats.record(Duration::from_millis(5));
        assert_eq!(
            lock(&stats.completions).len(),
            1,
            "the old completions were forgotten"
        );
        assert_eq!(stats.frames_inferred.load(Ordering::Relaxed), 1);
    }

    fn busy_mailbox(started: Instant) -> Mailbox {
        Mailbox {
            inference_since: Some(started),
            inference_time: Some(10 * MS),
            convert_time: Some(MS),
            ..Default::default()
        }
    }

    #[test]
    fn conversion_starts_so_the_frame_is_ready_as_the_inference_ends() {
        let started = Instant::now();
        let mut mailbox = busy_mailbox(started);
        // Predicted end 10 ms after the start, less twice the 1 ms conversion.
        assert_eq!(mailbox.prepare_from(), Some(started + 8 * MS));
        assert_eq!(mailbox.frame_wanted_at(started), started + 8 * MS);
        // Past that moment the frame is wanted now.
        assert_eq!(mailbox.frame_wanted_at(started + 9 * MS), started + 9 * MS);
        // Nothing learnt about conversion yet: start at the predicted end.
        mailbox.convert_time = None;
        assert_eq!(mailbox.prepare_from(), Some(started + 10 * MS));
    }

    #[test]
    fn an_idle_model_wants_a_frame_now() {
        let now = Instant::now();
        let mut mailbox = busy_mailbox(now);
        mailbox.inference_since = None;
        assert_eq!(mailbox.prepare_from(), None);
        assert_eq!(mailbox.frame_wanted_at(now), now);
        // A model not timed yet: no prediction either.
        let mailbox = Mailbox {
            inference_since: Some(now),
            ..Default::default()
        };
        assert_eq!(mailbox.frame_wanted_at(now), now);
    }

    #[test]
    fn with_a_frame_being_prepared_the_next_is_wanted_one_inference_later() {
        let started = Instant::now();
        let mut mailbox = busy_mailbox(started);
        mailbox.preparing = true;
        // The prepared frame runs from 10 ms; the one after it is converted from 18 ms.
        assert_eq!(mailbox.frame_wanted_at(started), started + 18 * MS);
        // Idle model but a frame waiting to be taken: one inference from now, less the lead.
        mailbox.inference_since = None;
        assert_eq!(mailbox.frame_wanted_at(started), started + 8 * MS);
    }
}
