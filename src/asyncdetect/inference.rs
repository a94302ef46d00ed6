//! The inference thread's work on one model: load it, then per prepared frame decide whether the
//! model needs to run (motion gating), run it, filter and track what it found, and publish the
//! result to the buffers and the bus. A model change swaps the model between frames.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use gst::glib;
use gst::prelude::*;

use super::CAT;
use super::follow::DetectionBatch;
use super::handoff::{Job, Tracking};
use super::mailbox::{InputTarget, Prepared, Shared, WorkerConfig};
use super::meta::{DETECTION_PREDICTION, InferenceResult, result_message};
use super::server::ServerHealth;
use crate::detection::{Detection, DetectionFilter};
use crate::engine::{EngineError, Model, ModelSource};
use crate::geometry::Placement;
use crate::motion::{MotionGate, Thumbnail};
use crate::track::{Tracker, Velocity};

/// The inference failed for good: the element has posted an error.
pub struct Failed;

pub struct Inference<'a> {
    element: &'a glib::WeakRef<gst::Element>,
    shared: &'a Shared,
    model: Model,
    labels_origin: Option<String>,
    /// Bumped for every model loaded (see [`InputTarget::version`]).
    input_version: u64,
    /// Sync mode: post a latency message once a model's run time is known.
    post_latency: bool,
    warned_bad_frame: bool,
    warned_unnamed: bool,
    /// The filter as set, and as applied to this model (see [`Inference::filter_for_model`]).
    applied_filter: Option<(Arc<DetectionFilter>, Arc<DetectionFilter>)>,
    tracker: Tracker,
    /// The flush generation the tracks belong to.
    tracker_generation: u64,
    /// Time base for frames without timestamps.
    epoch: Instant,
    motion_gate: MotionGate,
    /// What the gate compared against was seen through this placement and flush generation.
    gate_context: Option<(Placement, u64)>,
    /// A served model's server: whether it answers.
    health: Option<ServerHealth>,
}

impl<'a> Inference<'a> {
    /// Loads the first model. A newer model asked for during the warm-up interrupts it: this one
    /// is still needed until the newer one loads, so it loads again (the change is applied next).
    /// `None`: stopped, or failed (an error is posted).
    pub fn start(
        element: &'a glib::WeakRef<gst::Element>,
        shared: &'a Shared,
        config: WorkerConfig,
        post_latency: bool,
    ) -> Option<Self> {
        let load_start = Instant::now();
        let load = || {
            Model::load(
                &config.source,
                config.labels.clone(),
                &config.options,
                &shared.load_canceller,
                &shared.frame_canceller,
                &|| shared.is_shut_down(),
            )
        };
        // A served model waits for its server, however long it is away.
        let mut health =
            matches!(config.source, ModelSource::Server(_)).then(|| ServerHealth::connecting(shared));
        let mut loaded = load();
        loop {
            match (&loaded, &mut health) {
                (Err(EngineError::Cancelled), _) if !shared.is_shut_down() => {}
                (Err(EngineError::Unavailable(why) | EngineError::Model(why)), Some(health)) => {
                    if !health.lost(element, shared, why) {
                        return None;
                    }
                }
                _ => break,
            }
            loaded = load();
        }
        if let Some(health) = &mut health {
            health.answered(element, shared);
        }
        let model = match loaded {
            Ok(model) => model,
            Err(EngineError::Cancelled) => return None,
            Err(e) => {
                let kind = match &e {
                    EngineError::Runtime(_) => gst::LibraryError::Init,
                    _ => gst::LibraryError::Settings,
                };
                shared.fail_with(element, kind, e.to_string());
                return None;
            }
        };
        let mut inference = Inference {
            element,
            shared,
            model,
            labels_origin: config.labels_origin,
            input_version: 1,
            post_latency,
            warned_bad_frame: false,
            warned_unnamed: false,
            applied_filter: None,
            tracker: Tracker::default(),
            tracker_generation: 0,
            epoch: Instant::now(),
            motion_gate: MotionGate::default(),
            gate_context: None,
            health,
        };
        inference.model_ready(&config.source, load_start);
        Some(inference)
    }

    /// Switches to another model; a model that fails leaves the current one running, with a
    /// warning.
    pub fn reload(&mut self, config: WorkerConfig) {
        let load_start = Instant::now();
        let loaded = Model::load(
            &config.source,
            config.labels,
            &config.options,
            &self.shared.load_canceller,
            &self.shared.frame_canceller,
            &|| self.shared.is_shut_down(),
        );
        match loaded {
            Ok(model) => {
                self.model = model;
                self.labels_origin = config.labels_origin;
                self.warned_unnamed = false;
                self.applied_filter = None;
                self.input_version += 1;
                self.model_ready(&config.source, load_start);
                self.motion_gate.reset();
            }
            // Interrupted by a stop or a newer model: nothing to report.
            Err(EngineError::Cancelled) => {}
            Err(e) => {
                if let Some(element) = self.element.upgrade() {
                    gst::element_warning!(
                        element,
                        gst::LibraryError::Settings,
                        ("Keeping the current model: {}", e)
                    );
                }
            }
        }
    }

    /// Logs a freshly loaded model, seeds the latency estimate with its warm-up run (sync mode
    /// reports it in the LATENCY query; async mode uses it to time hand-overs) and tells the
    /// preparer what to convert frames to.
    fn model_ready(&mut self, source: &ModelSource, load_start: Instant) {
        let model = &self.model;
        self.shared.stats.set_session(model.session_users());
        let input = model.input().clone();
        self.shared.model_loaded(
            InputTarget {
                channel_order: input.channel_order,
                width: input.width as u32,
                height: input.height as u32,
                preferred_fit: model.decoder().preferred_fit(),
                version: self.input_version,
            },
            model.first_run_time(),
        );
        if let Some(element) = self.element.upgrade() {
            gst::info!(
                CAT,
                obj = element,
                "Loaded {} in {:?} {}: input `{}` {:?} {:?} {}x{} {:?}, decoder {}",
                source,
                load_start.elapsed(),
                match source {
                    ModelSource::Server(_) => "(served)".to_string(),
                    _ => format!(
                        "with ONNX Runtime from {}",
                        crate::engine::loaded_library().map_or("?".into(), |path| path.display().to_string())
                    ),
                },
                input.name,
                input.layout,
                input.element_type,
                input.width,
                input.height,
                input.channel_order,
                model.decoder().name()
            );
            if self.post_latency {
                // Sync mode's latency is now known: let the pipeline ask again.
                let _ = element.post_message(gst::message::Latency::builder().src(&element).build());
            }
        }
    }

    /// One prepared frame, from the model's run to the published result.
    pub fn process(&mut self, prepared: Prepared) -> Result<(), Failed> {
        let started = Instant::now();
        self.note_session();
        let Prepared {
            job,
            placement,
            converted,
            input_version,
            convert_time,
        } = prepared;
        if input_version != self.input_version {
            // Converted for the model used before a reload.
            self.shared.job_done(None);
            self.shared.finished(job.seq);
            return Ok(());
        }
        let converted = match converted {
            Ok(frame) => frame,
            Err(reason) => {
                // One bad frame does not stop detection; tell the application once.
                self.warn_bad_frame(&reason);
                self.shared.job_done(None);
                self.shared.finished(job.seq);
                return Ok(());
            }
        };
        let (frame, stride) = &converted;
        let plane = frame.plane_data(0).unwrap_or(&[]);
        if let Some(threshold) = job.motion_threshold
            && let Some(latest) = self.unchanged(plane, *stride, threshold, placement, job.generation)
        {
            // Nothing moved: the last result holds for this frame too, standing still (the visual
            // tracker keeps following what it has).
            self.shared.stats.frames_unchanged.fetch_add(1, Ordering::Relaxed);
            self.shared.job_done(None);
            if job.tracking == Tracking::Visual {
                self.shared.finished(job.seq);
                return Ok(());
            }
            let tracks = latest
                .tracks()
                .into_iter()
                .map(|(id, _)| (id, Velocity::default()))
                .collect();
            let result = InferenceResult::new(job.seq, job.pts, latest.detections.clone(), tracks, 0.0);
            self.shared.handoff.publish(job.generation, result);
            self.shared.finished(job.seq);
            return Ok(());
        }
        self.model.set_nms_iou(job.nms_iou);
        let detections = match self.model.detect(plane, *stride) {
            Ok(detections) => detections,
            // Interrupted by a flush, a stop or a new model: no result for this frame.
            Err(EngineError::Cancelled) => {
                self.shared.job_done(None);
                self.shared.finished(job.seq);
                return Ok(());
            }
            // The server is away: no result for this frame, and none tried until the back-off
            // ends.
            Err(EngineError::Unavailable(why)) if self.health.is_some() => {
                self.shared.job_done(None);
                self.shared.finished(job.seq);
                if let Some(health) = &mut self.health {
                    health.lost(self.element, self.shared, &why);
                }
                return Ok(());
            }
            Err(e) => {
                self.shared.fail_with(
                    self.element,
                    gst::StreamError::Failed,
                    format!("Inference failed: {e}"),
                );
                return Err(Failed);
            }
        };
        drop(converted);
        if let Some(health) = &mut self.health {
            health.answered(self.element, self.shared);
        }
        let mut detections: Vec<Detection> = detections
            .into_iter()
            .map(|mut detection| {
                detection.bbox = placement.to_frame(&detection.bbox);
                detection
            })
            .collect();
        if let Some(region) = &job.region {
            detections.retain(|d| region.contains(&d.bbox));
        }
        self.warn_unnamed(&detections);
        let detections = self.filter_for_model(&job.filter).apply(detections);
        let model_time = started.elapsed();
        self.shared.job_done(Some(model_time));
        let took = convert_time + model_time;
        self.shared.stats.record(took);
        if job.tracking == Tracking::Visual {
            self.hand_to_tracker(job, detections, took);
            return Ok(());
        }
        let (detections, tracks) = self.track(
            detections,
            job.tracking,
            job.track_lost_time,
            job.pts,
            job.generation,
        );
        let result = InferenceResult::new(
            job.seq,
            job.pts,
            detections,
            tracks,
            if job.tracking == Tracking::Predict {
                DETECTION_PREDICTION
            } else {
                0.0
            },
        );
        let message = self
            .element
            .upgrade()
            .filter(|_| job.post_messages)
            .map(|element| {
                let message = gst::message::Element::builder(result.message(took))
                    .src(&element)
                    .build();
                (element, message)
            });
        let published = self.shared.handoff.publish(job.generation, result);
        if let (true, Some((element, message))) = (published, message) {
            gst::trace!(
                CAT,
                obj = element,
                "Inference on frame {} took {:?}",
                job.seq,
                took
            );
            let _ = element.post_message(message);
        }
        // After the message: whoever waits for this frame (sync mode, the end of the stream)
        // goes on with its result already on the bus.
        self.shared.finished(job.seq);
        Ok(())
    }

    /// `tracking=visual`: the visual tracker carries the detections to the newest frame and
    /// publishes them; the bus message says what the model saw.
    fn hand_to_tracker(&mut self, job: Job, detections: Vec<Detection>, took: std::time::Duration) {
        let message = job
            .post_messages
            .then(|| result_message(job.pts, &detections, took));
        self.shared.visual.detected(DetectionBatch {
            pts: job.pts,
            seq: job.seq,
            generation: job.generation,
            detections,
            lost_after: job.track_lost_time,
        });
        if let Some(message) = message
            && self.shared.handoff.is_current(job.generation)
            && let Some(element) = self.element.upgrade()
        {
            let _ = element.post_message(gst::message::Element::builder(message).src(&element).build());
        }
        self.shared.finished(job.seq);
    }

    /// Keeps the hand-over told whether other streams share the session, and reports a lane
    /// that could not be opened.
    fn note_session(&self) {
        self.shared
            .set_session_shared(self.model.session_users().count() > 1);
        if let Some(e) = self.model.take_lane_error()
            && let Some(element) = self.element.upgrade()
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
    }

    /// Motion gating: the last result, if the picture has not changed enough since the model
    /// last ran (and there is a result to keep).
    fn unchanged(
        &mut self,
        plane: &[u8],
        stride: usize,
        threshold: f32,
        placement: Placement,
        generation: u64,
    ) -> Option<std::sync::Arc<InferenceResult>> {
        if self.gate_context != Some((placement, generation)) {
            self.motion_gate.reset();
            self.gate_context = Some((placement, generation));
        }
        let input = self.model.input();
        let thumbnail = Thumbnail::from_packed_rgb(plane, input.width, input.height, stride);
        if self.motion_gate.should_infer(thumbnail, threshold) {
            return None;
        }
        // None after a flush: then the model runs.
        self.shared.handoff.latest()
    }

    /// Track ids and velocities for `detections` when tracking.
    fn track(
        &mut self,
        detections: Vec<Detection>,
        tracking: Tracking,
        lost_after: f64,
        pts: Option<gst::ClockTime>,
        generation: u64,
    ) -> (Vec<Detection>, Vec<(u32, Velocity)>) {
        if tracking == Tracking::None {
            return (detections, Vec::new());
        }
        // A flush or seek may show another scene: start over.
        if generation != self.tracker_generation {
            self.tracker.reset();
            self.tracker_generation = generation;
        }
        self.tracker.lost_after = lost_after;
        let at = pts.map_or_else(|| self.epoch.elapsed().as_secs_f64(), |pts| pts.seconds_f64());
        self.tracker
            .update(detections, at)
            .into_iter()
            .map(|t| (t.detection, (t.track_id, t.velocity)))
            .unzip()
    }

    fn warn_bad_frame(&mut self, reason: &str) {
        if !self.warned_bad_frame
            && let Some(element) = self.element.upgrade()
        {
            gst::element_warning!(
                element,
                gst::StreamError::Format,
                ("Skipping a frame: {}", reason)
            );
        }
        self.warned_bad_frame = true;
    }

    /// The filter to apply: as set, with the model family's own default threshold when the user
    /// set none. Worked out once per setting (a frame costs no copy), when it also warns if
    /// `labels` or `class-thresholds` name a class the model does not have (a misspelt `persn`
    /// would silently report nothing), listing the ones it has.
    fn filter_for_model(&mut self, filter: &Arc<DetectionFilter>) -> Arc<DetectionFilter> {
        if let Some((set, applied)) = &self.applied_filter
            && Arc::ptr_eq(set, filter)
        {
            return applied.clone();
        }
        self.warn_unknown_classes(filter);
        let applied = match self
            .model
            .decoder()
            .preferred_threshold()
            .filter(|_| filter.threshold_is_default)
        {
            Some(threshold) => Arc::new(DetectionFilter {
                threshold,
                ..(**filter).clone()
            }),
            None => filter.clone(),
        };
        self.applied_filter = Some((filter.clone(), applied.clone()));
        applied
    }

    fn warn_unknown_classes(&self, filter: &DetectionFilter) {
        let labels = self.model.labels();
        // Classes the labels do not name are reported by their id.
        let unknown =
            filter.unknown_classes(|name| labels.contains_name(name) || name.parse::<i32>().is_ok());
        if unknown.is_empty() {
            return;
        }
        if let Some(element) = self.element.upgrade() {
            gst::element_warning!(
                element,
                gst::LibraryError::Settings,
                (
                    "labels or class-thresholds name classes the model does not have: {}",
                    unknown.join(", ")
                ),
                ["The model's classes: {}", labels.names_by_id().join(", ")]
            );
        }
    }

    /// The labels file is shorter than the model's classes: say so once.
    fn warn_unnamed(&mut self, detections: &[Detection]) {
        if self.warned_unnamed {
            return;
        }
        let labels = self.model.labels();
        let (Some(origin), Some(unnamed)) = (
            &self.labels_origin,
            detections.iter().find(|d| labels.get(d.class_id).is_none()),
        ) else {
            return;
        };
        self.warned_unnamed = true;
        if let Some(element) = self.element.upgrade() {
            gst::element_warning!(
                element,
                gst::LibraryError::Settings,
                (
                    "{} names {} classes but the model reported class {}: it is labelled by its id",
                    origin,
                    labels.len(),
                    unnamed.class_id
                )
            );
        }
    }
}
