//! The worker's threads: the preparer converts and scales the newest frame to the model's input,
//! timed to finish as the running inference ends, so conversion overlaps the model instead of
//! adding to it; the inference thread owns the model and runs it on each prepared frame (see
//! `inference.rs`); the visual tracker follows objects through the frames (`follow.rs`; idle
//! unless `tracking=visual`). All run at a lowered priority (the tracker less lowered than the
//! model: it must keep up with the video), and a panic on any becomes an element error instead of
//! taking the application down.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use gst::glib;
use gst::prelude::*;

use super::CAT;
use super::inference::Inference;
use super::mailbox::{InputTarget, Prepared, Shared, Work, WorkerConfig};
use crate::convert::FrameConverter;
use crate::geometry::Placement;
use crate::priority::lower_priority;

/// Spawns the inference thread (which starts the preparer beside it).
pub fn spawn(
    element: &gst::Element,
    shared: Arc<Shared>,
    config: WorkerConfig,
    post_latency: bool,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let element = element.downgrade();
    std::thread::Builder::new()
        .name("asyncdetect-infer".into())
        .spawn(move || {
            let outcome =
                panic::catch_unwind(AssertUnwindSafe(|| run(&element, &shared, config, post_latency)));
            if let Err(payload) = outcome {
                report_crash(&element, &shared, "inference", payload.as_ref());
            }
        })
}

/// The inference thread's body: starts the preparer beside it and runs the model until shutdown.
fn run(element: &glib::WeakRef<gst::Element>, shared: &Shared, config: WorkerConfig, post_latency: bool) {
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
                    report_crash(element, shared, "frame preparer", payload.as_ref());
                }
                shared.worker_gone();
            });
        if let Err(e) = preparer {
            shared.fail_with(
                element,
                gst::CoreError::Thread,
                format!("Could not start the frame preparer thread: {e}"),
            );
            return;
        }
        let tracker = std::thread::Builder::new()
            .name("asyncdetect-track".into())
            .spawn_scoped(scope, || {
                let _ = lower_priority(nice / 2);
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                    super::follow::run(element, &shared.visual, &shared.handoff, &shared.stats)
                }));
                if let Err(payload) = outcome {
                    report_crash(element, shared, "visual tracker", payload.as_ref());
                }
            });
        if let Err(e) = tracker {
            shared.fail_with(
                element,
                gst::CoreError::Thread,
                format!("Could not start the visual tracker thread: {e}"),
            );
            shared.worker_gone();
            return;
        }
        let _stop_preparer = StopPreparer(shared);
        infer(element, shared, config, post_latency);
    });
}

/// The inference thread's loop: the model loaded, then frames and model changes until shutdown.
fn infer(element: &glib::WeakRef<gst::Element>, shared: &Shared, config: WorkerConfig, post_latency: bool) {
    let niceness = lower_priority(config.nice);
    if let Some(element) = element.upgrade() {
        match &niceness {
            Ok(nice) => gst::debug!(CAT, obj = element, "Inference threads run at nice {nice}"),
            Err(e) => gst::warning!(CAT, obj = element, "Could not lower the inference priority: {e}"),
        }
    }
    let Some(mut inference) = Inference::start(element, shared, config, post_latency) else {
        return;
    };
    while let Some(work) = shared.next_work() {
        match work {
            Work::Frame(prepared) => {
                if inference.process(*prepared).is_err() {
                    return;
                }
            }
            Work::Reload(config) => inference.reload(*config),
        }
    }
}

/// The preparer's loop: converts the newest frame to the model's input just before the inference
/// thread will want it, at the inference threads' niceness.
fn prepare(shared: &Shared, nice: i32) {
    // Failure is reported by the inference thread, which tries the same.
    let _ = lower_priority(nice);
    shared.handoff.register_preparer();
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

/// Fails the worker for a panic on one of its threads.
fn report_crash(
    element: &glib::WeakRef<gst::Element>,
    shared: &Shared,
    thread: &str,
    payload: &(dyn std::any::Any + Send),
) {
    let reason = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    shared.fail_with(
        element,
        gst::LibraryError::Failed,
        format!("The {thread} thread crashed: {reason}"),
    );
}
