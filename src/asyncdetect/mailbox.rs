//! How the element and its two worker threads coordinate: the frame hand-over and published
//! result ([`Handoff`], lock-free for the streaming thread), the converted frame passed from the
//! preparer to the inference thread, model changes, flushing, stopping and sync mode's wait.
//!
//! The mutex and condition variables here are taken by the worker threads and by the
//! application's or upstream thread on a state change, flush or model change; in async mode the
//! streaming thread never touches them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gst::glib;

use super::handoff::{Handoff, Job};
use super::stats::Statistics;
use crate::convert::ConvertedFrame;
use crate::engine::{ModelOptions, ModelSource, RunCanceller};
use crate::geometry::{Fit, Placement};
use crate::labels::Labels;
use crate::lock;

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
pub struct InputTarget {
    pub channel_order: crate::preprocess::ChannelOrder,
    pub width: u32,
    pub height: u32,
    /// How the model family wants frames fitted when the element does not say.
    pub preferred_fit: Fit,
    /// Bumped for every model loaded: a frame prepared for an earlier one is not used.
    pub version: u64,
}

/// A frame converted to the model's input, waiting for the inference thread.
pub struct Prepared {
    pub job: Job,
    pub placement: Placement,
    pub converted: Result<(ConvertedFrame, usize), String>,
    pub input_version: u64,
    pub convert_time: Duration,
}

/// What the inference thread does next.
pub enum Work {
    Frame(Box<Prepared>),
    Reload(Box<WorkerConfig>),
}

/// What the streaming thread learns when it waits for a result in sync mode.
pub enum WaitOutcome {
    Done(Option<Arc<super::meta::InferenceResult>>),
    Flushing,
    Failed,
}

#[derive(Default)]
struct Mailbox {
    /// Converted ahead by the preparer.
    prepared: Option<Box<Prepared>>,
    /// The preparer is converting a frame.
    preparing: bool,
    shutdown: bool,
    /// The inference thread or the preparer has ended: the other stops too.
    worker_gone: bool,
    /// `None` until a model is loaded.
    input: Option<InputTarget>,
    /// A model to switch to (model-location changed while running).
    reload: Option<WorkerConfig>,
}

/// Sync mode: how far the worker got, for the streaming thread waiting on one frame.
#[derive(Default)]
struct SyncOutcome {
    /// The `seq` of the last job the worker finished (published or not).
    finished_seq: u64,
    flushing: bool,
    failed: bool,
    stopped: bool,
    /// A model has loaded.
    model_loaded: bool,
    /// The inference server is away: frames pass without waiting for a result.
    server_away: bool,
}

#[derive(Default)]
pub struct Shared {
    pub handoff: Handoff,
    /// The visual tracker's mailboxes (`tracking=visual`, async mode).
    pub visual: super::follow::VisualFeed,
    pub stats: Arc<Statistics>,
    mailbox: Mutex<Mailbox>,
    /// Wakes the inference thread: a frame is prepared, a reload is asked, or everything stops.
    /// (The preparer sleeps by parking, so that the streaming thread can wake it without a lock.)
    frame_prepared: Condvar,
    outcome: Mutex<SyncOutcome>,
    result_ready: Condvar,
    /// Interrupts the running inference when stopping, flushing or changing the model, so none
    /// of them waits for the model to finish a frame.
    pub frame_canceller: Arc<RunCanceller>,
    /// Interrupts a model's warm-up run when stopping or when a newer model is asked for (a
    /// flush leaves a model change in progress alone).
    pub load_canceller: Arc<RunCanceller>,
}

impl Shared {
    pub fn new(stats: Arc<Statistics>) -> Self {
        Shared {
            stats,
            ..Default::default()
        }
    }

    /// Hands a frame over in sync mode and waits until the worker has processed it (or a flush,
    /// failure or shutdown makes waiting pointless).
    pub fn process_and_wait(&self, job: Job) -> WaitOutcome {
        let seq = job.seq;
        if self.handoff.is_closed() {
            return WaitOutcome::Flushing;
        }
        drop(self.handoff.put(job));
        let mut outcome = lock(&self.outcome);
        loop {
            if outcome.flushing || outcome.stopped {
                return WaitOutcome::Flushing;
            }
            if outcome.failed {
                return WaitOutcome::Failed;
            }
            if outcome.finished_seq >= seq {
                let latest = self.handoff.latest().filter(|r| r.seq == seq);
                return WaitOutcome::Done(latest);
            }
            if outcome.server_away {
                return WaitOutcome::Done(None);
            }
            outcome = self.result_ready.wait(outcome).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// FLUSH_START: forget results and waiting frames, interrupt the running inference (its
    /// result would be dropped anyway); a sync-mode wait returns.
    pub fn start_flush(&self) {
        lock(&self.outcome).flushing = true;
        self.result_ready.notify_all();
        let mut dropped = self.handoff.flush();
        self.visual.flush();
        self.frame_canceller.cancel();
        let prepared = {
            let mut mailbox = lock(&self.mailbox);
            let prepared = mailbox.prepared.take();
            self.handoff.timing.set_frame_in_hand(mailbox.preparing);
            prepared
        };
        dropped += u64::from(prepared.is_some());
        self.stats.skipped(dropped);
    }

    /// FLUSH_STOP: frames may flow again.
    pub fn stop_flush(&self) {
        lock(&self.outcome).flushing = false;
    }

    /// Asks the worker to finish and interrupts what it is running; wakes everything that waits.
    pub fn shut_down(&self) {
        let prepared = {
            let mut mailbox = lock(&self.mailbox);
            mailbox.shutdown = true;
            mailbox.prepared.take()
        };
        drop(prepared);
        self.handoff.close();
        self.visual.close();
        self.frame_prepared.notify_all();
        lock(&self.outcome).stopped = true;
        self.result_ready.notify_all();
        self.frame_canceller.cancel();
        self.load_canceller.cancel();
    }

    pub fn is_shut_down(&self) -> bool {
        lock(&self.mailbox).shutdown
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

    /// The inference thread's next work: a reload, or a prepared frame (its inference starts).
    pub fn next_work(&self) -> Option<Work> {
        let mut mailbox = lock(&self.mailbox);
        loop {
            if mailbox.shutdown || mailbox.worker_gone {
                return None;
            }
            if let Some(config) = mailbox.reload.take() {
                return Some(Work::Reload(Box::new(config)));
            }
            if let Some(prepared) = mailbox.prepared.take() {
                self.handoff.timing.set_inference_since(Some(Instant::now()));
                self.handoff.timing.set_frame_in_hand(mailbox.preparing);
                drop(mailbox);
                self.handoff.wake_preparer();
                return Some(Work::Frame(prepared));
            }
            mailbox = self
                .frame_prepared
                .wait(mailbox)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The preparer's next frame and what to convert it to: the newest offered frame, once a
    /// model is loaded, no converted frame waits, and the running inference is about to end.
    /// The preparer sleeps (parks) in between; whatever changes one of these wakes it.
    pub fn next_to_prepare(&self) -> Option<(Job, InputTarget)> {
        loop {
            let target = {
                let mailbox = lock(&self.mailbox);
                if mailbox.shutdown || mailbox.worker_gone {
                    return None;
                }
                mailbox.input.filter(|_| mailbox.prepared.is_none())
            };
            let Some(target) = target else {
                std::thread::park();
                continue;
            };
            let now = Instant::now();
            let wait = self
                .handoff
                .timing
                .schedule()
                .prepare_from()
                .and_then(|at| at.checked_duration_since(now))
                .filter(|wait| !wait.is_zero());
            if let Some(wait) = wait {
                std::thread::park_timeout(wait);
                continue;
            }
            let Some(job) = self.handoff.take_or_wait_for_frame() else {
                std::thread::park();
                continue;
            };
            let mut mailbox = lock(&self.mailbox);
            if mailbox.shutdown || mailbox.worker_gone {
                return None;
            }
            mailbox.preparing = true;
            self.handoff.timing.set_frame_in_hand(true);
            return Some((job, target));
        }
    }

    /// The preparer has converted a frame.
    pub fn frame_ready(&self, prepared: Box<Prepared>) {
        {
            let mut mailbox = lock(&self.mailbox);
            mailbox.preparing = false;
            self.handoff.timing.record_conversion(prepared.convert_time);
            if !mailbox.shutdown {
                mailbox.prepared = Some(prepared);
            }
            self.handoff.timing.set_frame_in_hand(mailbox.prepared.is_some());
        }
        self.frame_prepared.notify_one();
    }

    /// The inference thread, the preparer or the tracker ends; the others follow.
    pub fn worker_gone(&self) {
        lock(&self.mailbox).worker_gone = true;
        self.handoff.wake_preparer();
        self.visual.close();
        self.frame_prepared.notify_all();
    }

    /// A new model: the preparer converts for its input from now on, and its first timing
    /// replaces what was learnt about the previous one.
    pub fn model_loaded(&self, input: InputTarget, first_run: Duration) {
        lock(&self.mailbox).input = Some(input);
        self.handoff.timing.set_inference_time(first_run);
        self.handoff.wake_preparer();
        self.stats.model_loaded(first_run);
        lock(&self.outcome).model_loaded = true;
        self.result_ready.notify_all();
    }

    /// The inference ended; `model_time` is what the model took when it ran.
    pub fn job_done(&self, model_time: Option<Duration>) {
        self.handoff.timing.set_inference_since(None);
        if let Some(time) = model_time {
            self.handoff.timing.record_inference(time);
        }
        self.handoff.wake_preparer();
    }

    /// Records that the job `seq` ended, with or without a result, so a sync-mode wait ends.
    pub fn finished(&self, seq: u64) {
        {
            let mut outcome = lock(&self.outcome);
            outcome.finished_seq = outcome.finished_seq.max(seq);
        }
        self.result_ready.notify_all();
    }

    /// Waits until the first model has loaded, or failed (its error is posted by then), or the
    /// element flushes or stops. At the end of a stream shorter than the model's load, this is
    /// what lets a broken model be reported before EOS.
    pub fn wait_for_first_model(&self) {
        let mut outcome = lock(&self.outcome);
        while !(outcome.model_loaded
            || outcome.failed
            || outcome.stopped
            || outcome.flushing
            || outcome.server_away)
        {
            outcome = self.result_ready.wait(outcome).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits until the job `seq` has ended (with or without a result), or the worker failed, or
    /// the element flushes or stops.
    pub fn wait_until_finished(&self, seq: u64) {
        let mut outcome = lock(&self.outcome);
        while !(outcome.finished_seq >= seq || outcome.failed || outcome.stopped || outcome.flushing) {
            outcome = self.result_ready.wait(outcome).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn has_failed(&self) -> bool {
        lock(&self.outcome).failed
    }

    /// Posts an element error, then marks the worker failed. In that order: the streaming thread
    /// returns an error flow once it sees the failure, and the application should read this
    /// message, not a generic one.
    pub fn fail_with<T: gst::MessageErrorDomain>(
        &self,
        element: &glib::WeakRef<gst::Element>,
        kind: T,
        message: String,
    ) {
        if let Some(element) = element.upgrade() {
            gst::element_error!(element, kind, ("{}", message));
        }
        self.handoff.fail();
        lock(&self.outcome).failed = true;
        self.result_ready.notify_all();
        let prepared = lock(&self.mailbox).prepared.take();
        drop(prepared);
    }

    /// The inference server went away or came back: while it is away, sync mode's frames do not
    /// wait for results.
    pub fn set_server_away(&self, away: bool) {
        lock(&self.outcome).server_away = away;
        self.result_ready.notify_all();
    }

    /// Waits out `pause` (the back-off while an inference server is away), ending early for a
    /// model change. The frame prepared meanwhile is stale by then: it is dropped, and the
    /// preparer takes a newer one. False when the worker is stopping.
    pub fn pause(&self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        let mut mailbox = lock(&self.mailbox);
        loop {
            if mailbox.shutdown || mailbox.worker_gone {
                return false;
            }
            let now = Instant::now();
            if mailbox.reload.is_some() || now >= until {
                break;
            }
            mailbox = match self.frame_prepared.wait_timeout(mailbox, until - now) {
                Ok((mailbox, _)) => mailbox,
                Err(e) => e.into_inner().0,
            };
        }
        let stale = mailbox.prepared.take();
        // As when the inference thread takes a frame: with none in hand, the streaming thread
        // offers the next (left set, it would wait for a frame nobody prepares).
        self.handoff.timing.set_frame_in_hand(mailbox.preparing);
        drop(mailbox);
        if let Some(stale) = stale {
            self.stats.skipped(1);
            self.finished(stale.job.seq);
            self.handoff.wake_preparer();
        }
        true
    }

    pub fn set_session_shared(&self, shared: bool) {
        self.handoff.session_shared.store(shared, Ordering::Relaxed);
    }
}
