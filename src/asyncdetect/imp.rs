//! The `asyncdetect` element: a BaseTransform working in place that never waits for the model in
//! async mode. Per buffer, the streaming thread reads the settings and the newest result through
//! atomic pointers, offers the frame through a lock-free slot and attaches ready-made metas; the
//! worker threads (`worker.rs`) do everything else.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use super::follow::{FeedFrame, SyncFollower};
use super::handoff::{Job, View};
use super::mailbox::{Shared, WaitOutcome};
use super::settings::*;
use super::stats::{Statistics, smoothed};
use super::{AsyncDetectMode, AsyncDetectTracking, CAT, aliases, worker};
use crate::detection::DetectionFilter;
use crate::geometry::Region;
use crate::lock;

/// The streaming thread's own bookkeeping; exists between `start()` and `stop()`. Only the
/// streaming thread and state changes (start, stop, caps, events) take its lock, never a worker.
struct State {
    shared: Arc<Shared>,
    worker: Option<std::thread::JoinHandle<()>>,
    info: Option<gst_video::VideoInfo>,
    seq: u64,
    last_arrival: Option<Instant>,
    /// Smoothed wall-clock time between buffers, to predict when the next one comes.
    arrival_interval: Option<Duration>,
    /// The last frame handed to the worker (sequence number and timestamp), for rate control.
    last_taken: Option<(u64, Option<gst::ClockTime>)>,
    /// Sync mode: whether the video was found slower than a live source, said once.
    warned_slow_sync: bool,
    /// Whether upstream's caps were refused and the user told what to do, said once.
    warned_caps: bool,
    /// Sync mode with `tracking=visual`: the tracker this thread drives.
    follower: Option<SyncFollower>,
    /// Whether visual tracking failed on a frame, said once.
    warned_follow: bool,
}

/// What the streaming thread takes from [`State`] for one buffer.
struct Arrival {
    shared: Arc<Shared>,
    info: gst_video::VideoInfo,
    seq: u64,
    arrival_interval: Option<Duration>,
    rate_allows: bool,
}

#[derive(Default)]
pub struct AsyncDetect {
    /// Read per buffer with an atomic load; replaced whole by `set_property`.
    settings: ArcSwap<Settings>,
    /// Serialises `set_property` calls (never taken by the streaming thread).
    settings_writer: Mutex<()>,
    state: Mutex<Option<State>>,
    stats: Arc<Statistics>,
    /// Values refused while the element was stopped, by property: set from gst-launch-1.0 the
    /// warning goes nowhere (no bus yet), so starting fails with them instead.
    refused: Mutex<std::collections::BTreeMap<&'static str, String>>,
}

impl AsyncDetect {
    /// Changes the settings: a copy edited and swapped in whole, so a buffer sees the settings from
    /// before or after a change, never half of one.
    fn change(&self, edit: impl FnOnce(&mut Settings)) {
        let _writer = lock(&self.settings_writer);
        let mut settings = Settings::clone(&self.settings.load());
        edit(&mut settings);
        self.settings.store(Arc::new(settings));
    }

    fn update_filter(&self, edit: impl FnOnce(&mut DetectionFilter)) {
        self.change(|s| {
            let mut filter = (*s.filter).clone();
            edit(&mut filter);
            s.filter = Arc::new(filter);
        });
    }

    /// Hot reload: while running, hands the worker the model the settings now name. What cannot
    /// even be opened is reported at once and changes nothing.
    fn reload_model(&self) {
        let shared = lock(&self.state).as_ref().map(|s| s.shared.clone());
        let Some(shared) = shared else { return };
        match model_config(&self.settings.load()) {
            Ok(config) => {
                gst::info!(CAT, imp = self, "Switching to model {}", config.source);
                shared.request_reload(config);
            }
            Err(e) => gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                ("Keeping the current model: {}", e.message)
            ),
        }
    }

    fn shut_down_worker(&self) {
        let shared = lock(&self.state).as_ref().map(|s| s.shared.clone());
        if let Some(shared) = shared {
            shared.shut_down();
        }
    }

    /// Counts the buffer in and decides whether rate control lets it go to the model.
    fn arrive(&self, settings: &Settings, pts: Option<gst::ClockTime>) -> Result<Arrival, gst::FlowError> {
        let mut guard = lock(&self.state);
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let info = state.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        let now = Instant::now();
        if let Some(last) = state.last_arrival.replace(now) {
            state.arrival_interval = Some(smoothed(state.arrival_interval, now.duration_since(last)));
        }
        state.seq += 1;
        Ok(Arrival {
            shared: state.shared.clone(),
            info,
            seq: state.seq,
            arrival_interval: state.arrival_interval,
            rate_allows: settings.rate_allows(state.seq, pts, state.last_taken),
        })
    }

    /// At the end of the stream there is no video left to hold up: waits for a model still
    /// loading (so an error in it reaches the bus before EOS does) and for the last frame handed
    /// over (so its result is posted, even when the stream ran faster than the model), then says
    /// how many frames the model saw. A flush or a stop ends the wait.
    fn finish_stream(&self, shared: &Shared, last_taken: Option<u64>) {
        let settings = self.settings.load();
        shared.wait_for_first_model();
        if settings.mode == AsyncDetectMode::Async
            && let Some(seq) = last_taken
        {
            shared.wait_until_finished(seq);
        }
        let frames = self.stats.frames_in.load(Ordering::Relaxed);
        let inferred = self.stats.frames_inferred.load(Ordering::Relaxed);
        gst::info!(
            CAT,
            imp = self,
            "End of stream: {frames} frames, {inferred} inferred"
        );
        if frames > 0 && inferred == 0 && !shared.has_failed() {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                ("No frame was inferred of the {} frames of this stream", frames),
                [
                    "Frames reach the model only as interval, max-fps and motion-gating allow, \
                     and only one at a time: check those, or infer every frame with mode=sync"
                ]
            );
        } else if frames > 0 {
            let mut summary = format!("{inferred} of {frames} frames inferred");
            if settings.mode == AsyncDetectMode::Async
                && inferred.saturating_mul(2) < frames
                && settings.interval <= 1
                && settings.max_fps == 0.0
                && !settings.motion_gating
            {
                let model_ms = self.stats.inference_latency_ns.load(Ordering::Relaxed) as f64 / 1e6;
                summary.push_str(&format!(
                    ": the stream ran faster than the model ({model_ms:.0} ms a frame), which sees \
                     the newest frame each time it is free. Play in real time (sync=true on the \
                     sink) to see it keep up, or use mode=sync to infer every frame"
                ));
            }
            // gst-launch-1.0 prints an info message's debug text only.
            gst::element_imp_info!(self, gst::StreamError::Failed, ("{}", summary), ["{}", summary]);
        }
    }

    /// Sync mode with `tracking=visual`: this thread follows the objects into the buffer's frame
    /// (taking in `detections` when the model ran on it) and attaches where they are. A frame the
    /// tracker cannot read passes on without boxes, with one warning.
    fn follow_sync(
        &self,
        buffer: &mut gst::BufferRef,
        info: &gst_video::VideoInfo,
        seq: u64,
        generation: u64,
        settings: &Settings,
        detections: Option<Vec<crate::detection::Detection>>,
    ) {
        let followed = {
            let mut state = lock(&self.state);
            let Some(state) = state.as_mut() else { return };
            let lost_after = settings.track_lost_time as f64 / 1e9;
            let outcome = state
                .follower
                .get_or_insert_with(SyncFollower::default)
                .follow(buffer, info, seq, generation, lost_after, detections);
            if outcome.is_err() && std::mem::replace(&mut state.warned_follow, true) {
                return;
            }
            outcome
        };
        match followed {
            Ok(result) => {
                result.attach(buffer, info, 0);
            }
            Err(e) => {
                gst::element_imp_warning!(self, gst::StreamError::Failed, ("Visual tracking failed: {}", e))
            }
        }
    }

    /// Sync mode holds each frame for its inference: on a live source a model slower than the
    /// frame rate slows the video down to the model's rate. Says so once per start, with the
    /// figures.
    fn check_sync_keeps_up(&self, info: &gst_video::VideoInfo) {
        let fps = info.fps();
        if fps.numer() <= 0 || fps.denom() <= 0 {
            return;
        }
        let frame_ms = 1000.0 * fps.denom() as f64 / fps.numer() as f64;
        let model_ms = self.stats.inference_latency_ns.load(Ordering::Relaxed) as f64 / 1e6;
        if model_ms <= frame_ms {
            return;
        }
        {
            let mut state = lock(&self.state);
            match state.as_mut() {
                Some(state) if !state.warned_slow_sync => state.warned_slow_sync = true,
                _ => return,
            }
        }
        let mut latency = gst::query::Latency::new();
        let live = self.obj().sink_pad().peer_query(&mut latency) && latency.result().0;
        if live {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                (
                    "mode=sync on a live source: the model takes {:.0} ms a frame, longer than the \
                     {:.0} ms between frames, so the video slows to about {:.1} fps; mode=async \
                     keeps the full rate",
                    model_ms,
                    frame_ms,
                    1000.0 / model_ms
                )
            );
        }
    }

    /// Refuses a property value (the previous one stays): a warning, and while stopped, a
    /// reason for `start()` to fail.
    fn refuse(&self, property: &'static str, problem: String) {
        if lock(&self.state).is_none() {
            lock(&self.refused).insert(property, problem.clone());
        }
        gst::element_imp_warning!(
            self,
            gst::LibraryError::Settings,
            ("{}; keeping the previous value", problem)
        );
    }

    /// A property took a valid value: an earlier refusal no longer stands.
    fn accepted(&self, property: &'static str) {
        lock(&self.refused).remove(property);
    }

    fn mark_taken(&self, seq: u64, pts: Option<gst::ClockTime>) {
        if let Some(state) = lock(&self.state).as_mut() {
            state.last_taken = Some((seq, pts));
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AsyncDetect {
    const NAME: &'static str = "GstAsyncDetect";
    type Type = super::AsyncDetect;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for AsyncDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            let mut specs = super::properties::specs();
            specs.extend(super::aliases::specs());
            specs
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: Lazy<Vec<glib::subclass::Signal>> = Lazy::new(|| {
            vec![
                glib::subclass::Signal::builder("read-detections")
                    .param_types([gst::Buffer::static_type()])
                    .return_type::<gst::Structure>()
                    .action()
                    .class_handler(|args| {
                        let buffer = args.get(1)?.get::<gst::Buffer>().ok()?;
                        Some(super::meta::read_detections(&buffer).to_value())
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        // An alias (DL Streamer's name) sets the property it stands for; the id is not used.
        if let Some(canonical) = aliases::canonical(pspec.name())
            && let Some(target) = self.obj().find_property(canonical)
        {
            self.set_property(0, value, &target);
            return;
        }
        let optional_string = |value: &glib::Value| {
            value
                .get::<Option<String>>()
                .ok()
                .flatten()
                .filter(|s| !s.is_empty())
        };
        match pspec.name() {
            "model-location" => {
                self.change(|s| s.model_location = optional_string(value));
                self.reload_model();
            }
            "labels-location" => {
                self.change(|s| s.labels_location = optional_string(value));
                self.reload_model();
            }
            "onnxruntime-library" => self.change(|s| s.onnxruntime_library = optional_string(value)),
            "threshold" => {
                let threshold = value.get::<f64>().unwrap_or(DEFAULT_THRESHOLD) as f32;
                self.update_filter(|f| {
                    f.threshold = threshold;
                    f.threshold_is_default = false;
                });
            }
            "max-detections" => {
                let max = value.get::<u32>().unwrap_or(DEFAULT_MAX_DETECTIONS) as usize;
                self.update_filter(|f| f.max_detections = max);
            }
            "labels" => {
                let list = optional_string(value).unwrap_or_default();
                let classes = DetectionFilter::parse_classes(&list);
                self.change(|s| {
                    s.labels_filter = list;
                    s.filter = Arc::new(DetectionFilter {
                        classes,
                        ..(*s.filter).clone()
                    });
                });
            }
            "class-thresholds" => {
                let list = optional_string(value).unwrap_or_default();
                match DetectionFilter::parse_class_thresholds(&list) {
                    Ok(thresholds) => {
                        self.accepted("class-thresholds");
                        self.change(|s| {
                            s.class_thresholds = list;
                            s.filter = Arc::new(DetectionFilter {
                                class_thresholds: thresholds,
                                ..(*s.filter).clone()
                            });
                        })
                    }
                    Err(e) => self.refuse(
                        "class-thresholds",
                        format!("Invalid class-thresholds \"{list}\": {e}"),
                    ),
                }
            }
            "threads" => self.change(|s| s.threads = value.get().unwrap_or(DEFAULT_THREADS)),
            "mode" => self.change(|s| s.mode = value.get().unwrap_or(DEFAULT_MODE)),
            "max-age" => self.change(|s| s.max_age = value.get().unwrap_or(DEFAULT_MAX_AGE)),
            "channel-order" => self.change(|s| s.channel_order = value.get().unwrap_or_default()),
            "input-width" => self.change(|s| s.input_width = value.get().unwrap_or(0)),
            "input-height" => self.change(|s| s.input_height = value.get().unwrap_or(0)),
            "input-mean" => self.change(|s| s.input_mean = optional_string(value)),
            "input-std" => self.change(|s| s.input_std = optional_string(value)),
            "inference-nice" => {
                self.change(|s| s.inference_nice = value.get().unwrap_or(DEFAULT_INFERENCE_NICE))
            }
            "tracking" => self.change(|s| s.tracking = value.get().unwrap_or(DEFAULT_TRACKING)),
            "decoder" => self.change(|s| s.decoder = value.get().unwrap_or_default()),
            "execution-provider" => self.change(|s| s.execution_provider = value.get().unwrap_or_default()),
            "track-lost-time" => {
                self.change(|s| s.track_lost_time = value.get().unwrap_or(DEFAULT_TRACK_LOST_TIME))
            }
            "post-messages" => {
                self.change(|s| s.post_messages = value.get().unwrap_or(DEFAULT_POST_MESSAGES))
            }
            "input-resize" => self.change(|s| s.input_resize = value.get().unwrap_or_default()),
            "nms-iou" => self.change(|s| s.nms_iou = value.get().unwrap_or(DEFAULT_NMS_IOU)),
            "roi" => {
                let text = optional_string(value).unwrap_or_default();
                match Region::parse(&text) {
                    Ok(region) => {
                        self.accepted("roi");
                        self.change(|s| {
                            s.roi = text;
                            s.region = region.map(Arc::new);
                        })
                    }
                    Err(e) => self.refuse("roi", format!("Invalid roi \"{text}\": {e}")),
                }
            }
            "interval" => self.change(|s| s.interval = value.get().unwrap_or(DEFAULT_INTERVAL)),
            "max-fps" => self.change(|s| s.max_fps = value.get().unwrap_or(DEFAULT_MAX_FPS)),
            "motion-gating" => {
                self.change(|s| s.motion_gating = value.get().unwrap_or(DEFAULT_MOTION_GATING))
            }
            "motion-threshold" => {
                self.change(|s| s.motion_threshold = value.get().unwrap_or(DEFAULT_MOTION_THRESHOLD))
            }
            "model-instance-id" => self.change(|s| s.model_instance_id = optional_string(value)),
            "device" => match aliases::unsupported("device", value) {
                Some(problem) => self.refuse("device", problem),
                None => {
                    self.accepted("device");
                    let device = optional_string(value).unwrap_or_else(|| "CPU".into());
                    self.change(|s| s.device = device);
                }
            },
            "model-proc" => match aliases::unsupported("model-proc", value) {
                Some(problem) => self.refuse("model-proc", problem),
                None => self.accepted("model-proc"),
            },
            "batch-size" => self.change(|s| s.batch_size = value.get().unwrap_or(1)),
            "session-lanes" => {
                self.change(|s| s.session_lanes = value.get().unwrap_or(DEFAULT_SESSION_LANES))
            }
            "inference-server" => self.change(|s| s.inference_server = optional_string(value)),
            "server-model" => self.change(|s| s.server_model = optional_string(value)),
            "server-model-version" => self.change(|s| s.server_model_version = optional_string(value)),
            "server-token" => self.change(|s| s.server_token = optional_string(value)),
            "server-headers" => self.change(|s| s.server_headers = optional_string(value)),
            "server-ca-file" => self.change(|s| s.server_ca_file = optional_string(value)),
            "server-timeout" => {
                self.change(|s| s.server_timeout_ms = value.get().unwrap_or(DEFAULT_SERVER_TIMEOUT_MS))
            }
            other => gst::warning!(CAT, imp = self, "Property {other} is not writable"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(canonical) = aliases::canonical(pspec.name())
            && let Some(target) = self.obj().find_property(canonical)
        {
            return self.property(0, &target);
        }
        let settings = self.settings.load();
        let counter = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed).to_value();
        match pspec.name() {
            "model-location" => settings.model_location.to_value(),
            "labels-location" => settings.labels_location.to_value(),
            "onnxruntime-library" => settings.onnxruntime_library.to_value(),
            "threshold" => (settings.filter.threshold as f64).to_value(),
            "max-detections" => (settings.filter.max_detections as u32).to_value(),
            "labels" => settings.labels_filter.to_value(),
            "class-thresholds" => settings.class_thresholds.to_value(),
            "threads" => settings.threads.to_value(),
            "mode" => settings.mode.to_value(),
            "max-age" => settings.max_age.to_value(),
            "channel-order" => settings.channel_order.to_value(),
            "input-width" => settings.input_width.to_value(),
            "input-height" => settings.input_height.to_value(),
            "input-mean" => settings.input_mean.to_value(),
            "input-std" => settings.input_std.to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "inference-nice" => settings.inference_nice.to_value(),
            "tracking" => settings.tracking.to_value(),
            "decoder" => settings.decoder.to_value(),
            "execution-provider" => settings.execution_provider.to_value(),
            "track-lost-time" => settings.track_lost_time.to_value(),
            "input-resize" => settings.input_resize.to_value(),
            "nms-iou" => settings.nms_iou.to_value(),
            "roi" => settings.roi.to_value(),
            "interval" => settings.interval.to_value(),
            "max-fps" => settings.max_fps.to_value(),
            "motion-gating" => settings.motion_gating.to_value(),
            "motion-threshold" => settings.motion_threshold.to_value(),
            "model-instance-id" => settings.model_instance_id.to_value(),
            "session-lanes" => settings.session_lanes.to_value(),
            "inference-server" => settings.inference_server.to_value(),
            "server-model" => settings.server_model.to_value(),
            "server-model-version" => settings.server_model_version.to_value(),
            // Write-only: never read back.
            "server-token" => None::<String>.to_value(),
            "server-headers" => settings.server_headers.to_value(),
            "server-ca-file" => settings.server_ca_file.to_value(),
            "server-timeout" => settings.server_timeout_ms.to_value(),
            "server-status" => self.stats.server_status().to_value(),
            "device" => settings.device.to_value(),
            "batch-size" => settings.batch_size.to_value(),
            // Never kept: any value is refused.
            "model-proc" => None::<String>.to_value(),
            "frames-unchanged" => counter(&self.stats.frames_unchanged),
            "frames-tracked" => counter(&self.stats.frames_tracked),
            "session-runs" => self.stats.session_runs().0.to_value(),
            "session-frames" => self.stats.session_runs().1.to_value(),
            "frames-in" => counter(&self.stats.frames_in),
            "frames-inferred" => counter(&self.stats.frames_inferred),
            "frames-skipped" => counter(&self.stats.frames_skipped),
            "inference-fps" => self.stats.inference_fps().to_value(),
            "inference-latency" => counter(&self.stats.inference_latency_ns),
            "session-lanes-open" => {
                (self.stats.session_lanes_open().min(u32::MAX as usize) as u32).to_value()
            }
            "session-users" => (self.stats.session_users().min(u32::MAX as usize) as u32).to_value(),
            _ => {
                gst::warning!(CAT, imp = self, "Unknown property {}", pspec.name());
                pspec.default_value().clone()
            }
        }
    }
}

impl GstObjectImpl for AsyncDetect {}

impl ElementImpl for AsyncDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Asynchronous object detector",
                "Filter/Analyzer/Video",
                "Runs an ONNX object detector on an internal thread and attaches the newest \
                 detections to every passing buffer as GstVideoRegionOfInterestMeta, without \
                 delaying the video",
                "asyncdetect developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(crate::pads::raw_video_templates);
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PausedToReady {
            // Release a sync-mode wait before the pads deactivate, or deactivation would wait on it.
            self.shut_down_worker();
        }
        self.parent_change_state(transition)
    }
}

impl BaseTransformImpl for AsyncDetect {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let refused: Vec<String> = lock(&self.refused).values().cloned().collect();
        if !refused.is_empty() {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("{}", refused.join("; "))
            ));
        }
        let settings = self.settings.load_full();
        let config = model_config(&settings).map_err(|e| e.to_error_message())?;
        self.stats.reset();
        let shared = Arc::new(Shared::new(self.stats.clone()));
        gst::info!(CAT, imp = self, "Starting, model {}", config.source);
        let worker = worker::spawn(
            self.obj().upcast_ref(),
            shared.clone(),
            config,
            settings.mode == AsyncDetectMode::Sync,
        )
        .map_err(|e| {
            gst::error_msg!(
                gst::CoreError::Thread,
                ["Could not start the inference thread: {}", e]
            )
        })?;
        *lock(&self.state) = Some(State {
            shared,
            worker: Some(worker),
            info: None,
            seq: 0,
            last_arrival: None,
            arrival_interval: None,
            last_taken: None,
            warned_slow_sync: false,
            warned_caps: false,
            follower: None,
            warned_follow: false,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let state = lock(&self.state).take();
        if let Some(mut state) = state {
            state.shared.shut_down();
            if let Some(worker) = state.worker.take() {
                if worker.thread().id() == std::thread::current().id() {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "Stopped from the inference thread; it ends on its own"
                    );
                } else if worker.join().is_err() {
                    gst::warning!(CAT, imp = self, "The inference thread ended with a panic");
                }
            }
        }
        gst::info!(CAT, imp = self, "Stopped");
        Ok(())
    }

    fn accept_caps(&self, direction: gst::PadDirection, caps: &gst::Caps) -> bool {
        let accepted = self.parent_accept_caps(direction, caps);
        if !accepted && direction == gst::PadDirection::Sink {
            // Upstream ends with a bare "not-negotiated" from the demuxer or decoder; say here
            // what the element takes and what to put before it, once per start.
            let first = lock(&self.state)
                .as_mut()
                .is_some_and(|state| !std::mem::replace(&mut state.warned_caps, true));
            if first {
                let formats = self
                    .obj()
                    .sink_pad()
                    .pad_template_caps()
                    .structure(0)
                    .and_then(|s| s.get::<gst::List>("format").ok())
                    .map(|list| {
                        list.iter()
                            .filter_map(|v| v.get::<String>().ok())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Format,
                    (
                        "Cannot take {}: asyncdetect takes raw video in system memory in {}; \
                         put videoconvert before it",
                        caps,
                        formats
                    )
                );
            }
        }
        accepted
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "Unsupported caps {incaps:?}"))?;
        if info.width() == 0 || info.height() == 0 {
            return Err(gst::loggable_error!(
                CAT,
                "Unsupported frame size {}x{}",
                info.width(),
                info.height()
            ));
        }
        gst::debug!(CAT, imp = self, "Configured for {incaps:?} -> {outcaps:?}");
        if let Some(state) = lock(&self.state).as_mut() {
            state.info = Some(info);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        let (shared, last_taken) = match lock(&self.state).as_mut() {
            Some(state) => {
                if let gst::EventView::FlushStop(_) = event.view() {
                    // Frames handed over before the flush were dropped by it.
                    state.last_taken = None;
                }
                (Some(state.shared.clone()), state.last_taken.map(|(seq, _)| seq))
            }
            None => (None, None),
        };
        if let Some(shared) = shared {
            match event.view() {
                gst::EventView::FlushStart(_) => shared.start_flush(),
                gst::EventView::FlushStop(_) => shared.stop_flush(),
                gst::EventView::Eos(_) => self.finish_stream(&shared, last_taken),
                _ => (),
            }
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(latency) = query.view_mut()
        {
            let upstream_ok = self.obj().sink_pad().peer_query(latency.query_mut());
            if upstream_ok && self.settings.load().mode == AsyncDetectMode::Sync {
                // Each buffer waits for its inference: that time is latency the sinks must allow.
                let (live, min, max) = latency.result();
                let ours =
                    gst::ClockTime::from_nseconds(self.stats.inference_latency_ns.load(Ordering::Relaxed));
                gst::debug!(CAT, imp = self, "Adding {ours} of sync-mode latency");
                latency.set(live, min + ours, max.map(|max| max + ours));
            }
            return upstream_ok;
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn transform_ip(&self, buffer: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings.load_full();
        let Arrival {
            shared,
            info,
            seq,
            arrival_interval,
            rate_allows,
        } = self.arrive(&settings, buffer.pts())?;
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        let View {
            latest,
            generation,
            failed,
        } = shared.handoff.view();

        // The worker gets a shallow copy (a new buffer sharing this one's memory), made only when
        // it is handed over and before our metas are added, so it carries none of them.
        let make_job = || Job {
            buffer: Some(buffer.to_owned()),
            pts: buffer.pts(),
            info: info.clone(),
            seq,
            generation,
            filter: settings.filter.clone(),
            post_messages: settings.post_messages,
            tracking: settings.job_tracking(),
            track_lost_time: settings.track_lost_time as f64 / 1e9,
            fit: settings.fit(),
            region: settings.region.clone(),
            nms_iou: settings.nms_iou as f32,
            motion_threshold: settings.motion_threshold(),
        };

        let visual = settings.tracking == AsyncDetectTracking::Visual;
        if !rate_allows {
            // Not this stream's turn under interval/max-fps: pass on with the newest result.
            self.stats.skipped(1);
            if visual && settings.mode == AsyncDetectMode::Sync {
                self.follow_sync(buffer, &info, seq, generation, &settings, None);
                return Ok(gst::FlowSuccess::Ok);
            }
        } else if settings.mode == AsyncDetectMode::Sync {
            if failed {
                return Err(gst::FlowError::Error);
            }
            self.mark_taken(seq, buffer.pts());
            return match shared.process_and_wait(make_job()) {
                WaitOutcome::Done(result) => {
                    if visual {
                        let detections = result.map(|result| result.detections.clone());
                        self.follow_sync(buffer, &info, seq, generation, &settings, detections);
                    } else if let Some(result) = result {
                        result.attach(buffer, &info, 0);
                    }
                    self.check_sync_keeps_up(&info);
                    Ok(gst::FlowSuccess::Ok)
                }
                WaitOutcome::Flushing => Err(gst::FlowError::Flushing),
                WaitOutcome::Failed => Err(gst::FlowError::Error),
            };
        } else if !failed && shared.handoff.offer(make_job, arrival_interval, &self.stats) {
            self.mark_taken(seq, buffer.pts());
        }
        if visual && !failed {
            // Every frame the tracker is ready for goes to it (a shallow copy, before our metas).
            shared.visual.offer(|| FeedFrame {
                buffer: buffer.to_owned(),
                info: info.clone(),
                seq,
                generation,
            });
        }
        if let Some(result) = latest {
            let attached = result.attach(buffer, &info, settings.max_age);
            gst::log!(
                CAT,
                imp = self,
                "Attached {attached} detections from frame {}",
                result.seq
            );
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
