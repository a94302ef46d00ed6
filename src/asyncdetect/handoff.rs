//! What the streaming thread and the worker threads share, built so that the streaming thread never
//! waits for a worker: it takes no lock a worker can hold and makes no system call per buffer.
//!
//! - A frame is offered through a one-slot mailbox swapped atomically ([`Slot`]): a newer frame
//!   replaces a waiting one. The preparer picks it up on its own schedule, timed from the running
//!   inference (it knows when that ends); only a preparer idle for want of a frame is woken, so
//!   at most one wake-up per inference, never one per buffer.
//! - The newest result is published by an atomic pointer swap ([`ArcSwapOption`]) and read with
//!   an atomic load; its metas and bus-message structures were built by the inference thread.
//! - When the model will want the next frame is predicted from timings kept in atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::meta::InferenceResult;
use super::stats::{Statistics, nanos, smoothed};
use crate::detection::DetectionFilter;
use crate::geometry::{Fit, Region};
use crate::lock;

/// How a result's boxes follow their objects between inferences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracking {
    None,
    /// Track ids kept across frames.
    Ids,
    /// Track ids, and boxes moved forward to the time of the buffer they are attached to.
    Predict,
    /// The visual tracker follows the objects (async mode): results go to it, not to the buffers.
    Visual,
}

/// A frame handed to the worker. `buffer` shares the frame's memory until the worker has converted
/// it, which would make a downstream element that writes in place copy the frame; that is why
/// frames are only handed over when the worker will soon want one (see [`Handoff::offer`]).
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
    pub tracking: Tracking,
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

pub use crate::slot::Slot;

// SAFETY: the slot only moves `T` values between threads, whole.
unsafe impl<T: Send> Send for Slot<T> {}
// SAFETY: as above; no `&T` is ever handed out.
unsafe impl<T: Send> Sync for Slot<T> {}

/// What is known about the worker's timing at one moment, to predict when it wants a frame.
#[derive(Debug, Default, Clone, Copy)]
pub struct Schedule {
    /// When the inference in progress started; `None` while the inference thread waits.
    pub inference_since: Option<Instant>,
    /// Smoothed time per inference (model and decoding) and per conversion.
    pub inference_time: Option<Duration>,
    pub convert_time: Option<Duration>,
    /// A frame is converted and waiting, or being converted.
    pub frame_in_hand: bool,
}

impl Schedule {
    /// How long before the running inference's predicted end the preparer starts: twice a
    /// conversion, for the estimates' error and the hand-over's wake-up.
    fn convert_lead(&self) -> Duration {
        self.convert_time.unwrap_or_default() * 2
    }

    /// When the preparer should start converting the next frame so that it is ready as the running
    /// inference ends (`None`: now). Starting earlier would hand the model an older frame.
    pub fn prepare_from(&self) -> Option<Instant> {
        let end = self.inference_since? + self.inference_time?;
        end.checked_sub(self.convert_lead())
    }

    /// When a new frame will next be taken from the slot.
    pub fn frame_wanted_at(&self, now: Instant) -> Instant {
        if self.frame_in_hand {
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

/// A [`Schedule`] kept in atomics: written by the worker threads, read by the streaming thread
/// without a lock. Instants are nanoseconds after `epoch`, plus one; durations nanoseconds; 0 is
/// "none".
pub struct Timing {
    epoch: Instant,
    inference_since: AtomicU64,
    inference_time: AtomicU64,
    convert_time: AtomicU64,
    frame_in_hand: AtomicBool,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            epoch: Instant::now(),
            inference_since: AtomicU64::new(0),
            inference_time: AtomicU64::new(0),
            convert_time: AtomicU64::new(0),
            frame_in_hand: AtomicBool::new(false),
        }
    }
}

impl Timing {
    pub fn schedule(&self) -> Schedule {
        let duration = |value: &AtomicU64| {
            Some(value.load(Ordering::Relaxed))
                .filter(|&n| n > 0)
                .map(Duration::from_nanos)
        };
        Schedule {
            inference_since: duration(&self.inference_since)
                .map(|n| self.epoch + n - Duration::from_nanos(1)),
            inference_time: duration(&self.inference_time),
            convert_time: duration(&self.convert_time),
            frame_in_hand: self.frame_in_hand.load(Ordering::Relaxed),
        }
    }

    pub fn set_inference_since(&self, since: Option<Instant>) {
        let value = since.map_or(0, |at| nanos(at.saturating_duration_since(self.epoch)) + 1);
        self.inference_since.store(value, Ordering::Relaxed);
    }

    // Each smoothed time has one writer (the inference thread for the inference, the preparer for
    // the conversion), so reading, smoothing and storing it needs no lock.

    /// A new model: its first run replaces what was learnt about the previous one.
    pub fn set_inference_time(&self, time: Duration) {
        store_duration(&self.inference_time, Some(time));
    }

    /// An inference ran for `sample`.
    pub fn record_inference(&self, sample: Duration) {
        let smoothed = smoothed(self.schedule().inference_time, sample);
        store_duration(&self.inference_time, Some(smoothed));
    }

    /// A conversion took `sample`.
    pub fn record_conversion(&self, sample: Duration) {
        let smoothed = smoothed(self.schedule().convert_time, sample);
        store_duration(&self.convert_time, Some(smoothed));
    }

    pub fn set_frame_in_hand(&self, in_hand: bool) {
        self.frame_in_hand.store(in_hand, Ordering::Relaxed);
    }
}

/// Stores a duration as [`Timing`] keeps it: nanoseconds, at least 1, 0 for none.
fn store_duration(target: &AtomicU64, time: Option<Duration>) {
    target.store(time.map_or(0, |t| nanos(t).max(1)), Ordering::Relaxed);
}

/// The streaming thread's view of the worker, taken once per buffer without a lock.
pub struct View {
    pub latest: Option<Arc<InferenceResult>>,
    pub generation: u64,
    pub failed: bool,
}

/// The frame mailbox and the published result, shared by the element and its worker threads.
#[derive(Default)]
pub struct Handoff {
    pending: Slot<Job>,
    /// The preparer found no frame and sleeps until one is offered.
    preparer_idle: AtomicBool,
    preparer: OnceLock<std::thread::Thread>,
    pub timing: Timing,
    latest: ArcSwapOption<InferenceResult>,
    /// Bumped on every flush; results of jobs from an older generation are dropped.
    generation: AtomicU64,
    /// Makes "check the generation, then publish" one step against a flush (worker and flushing
    /// threads only; the streaming thread reads `latest` and `generation` atomically).
    publishing: Mutex<()>,
    failed: AtomicBool,
    closed: AtomicBool,
    /// Other elements use the same model instance (kept up to date by the worker).
    pub session_shared: AtomicBool,
}

impl Handoff {
    pub fn view(&self) -> View {
        View {
            latest: self.latest.load_full(),
            generation: self.generation.load(Ordering::Acquire),
            failed: self.failed.load(Ordering::Acquire),
        }
    }

    /// The newest published result.
    pub fn latest(&self) -> Option<Arc<InferenceResult>> {
        self.latest.load_full()
    }

    /// Offers a frame in async mode. It goes into the slot if an older frame waits there (it is
    /// replaced) or if the preparer will want one before the next frame arrives (`frame_interval`).
    /// Otherwise the frame is not shared with the worker at all, so downstream elements that write
    /// in place are not forced to copy it. Returns whether the frame was taken.
    pub fn offer(
        &self,
        make_job: impl FnOnce() -> Job,
        frame_interval: Option<Duration>,
        stats: &Statistics,
    ) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let wanted_soon = frame_interval.is_none_or(|interval| {
            let now = Instant::now();
            self.timing.schedule().frame_wanted_at(now) <= now + interval + interval / 2
        });
        // On a session shared with other streams the wait in its queue cannot be predicted, and
        // a frame missing when the turn comes leaves the session idle: always keep one ready.
        let wanted_soon = wanted_soon || self.session_shared.load(Ordering::Relaxed);
        if !wanted_soon && !self.pending.is_full() {
            stats.skipped(1);
            return false;
        }
        if self.put(make_job()).is_some() {
            stats.skipped(1);
        }
        true
    }

    /// Puts a frame in the slot (a waiting one is returned) and wakes the preparer if it sleeps
    /// for want of one.
    pub fn put(&self, job: Job) -> Option<Job> {
        let replaced = self.pending.put(job);
        if self.preparer_idle.swap(false, Ordering::SeqCst) {
            self.wake_preparer();
        }
        replaced
    }

    /// The preparer is about to sleep until a frame comes. Returns the frame if one came
    /// meanwhile (then it must not sleep); otherwise the next offer wakes it.
    pub fn take_or_wait_for_frame(&self) -> Option<Job> {
        self.preparer_idle.store(true, Ordering::SeqCst);
        let job = self.pending.take();
        if job.is_some() {
            self.preparer_idle.store(false, Ordering::SeqCst);
        }
        job
    }

    /// Registers the calling thread as the preparer, the one thread frames wake.
    pub fn register_preparer(&self) {
        let _ = self.preparer.set(std::thread::current());
    }

    /// Wakes the preparer to look at its work again (an unpark: no lock).
    pub fn wake_preparer(&self) {
        if let Some(preparer) = self.preparer.get() {
            preparer.unpark();
        }
    }

    /// Publishes a result unless a flush happened since its frame was taken.
    pub fn publish(&self, generation: u64, result: InferenceResult) -> bool {
        let _publishing = lock(&self.publishing);
        let current = self.generation.load(Ordering::Acquire) == generation;
        if current {
            self.latest.store(Some(Arc::new(result)));
        }
        current
    }

    /// Whether no flush happened since a frame of `generation` was taken.
    pub fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }

    /// A flush: results so far are forgotten and the waiting frame is dropped. Returns how many
    /// frames were dropped.
    pub fn flush(&self) -> u64 {
        {
            let _publishing = lock(&self.publishing);
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.latest.store(None);
        }
        u64::from(self.pending.take().is_some())
    }

    /// The worker failed: frames are no longer offered, and sync mode returns an error.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
        drop(self.pending.take());
    }

    /// Stopping: nothing more is offered; the waiting frame is dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        drop(self.pending.take());
        self.wake_preparer();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_slot_hands_each_value_over_once_and_a_put_returns_the_one_it_replaced() {
        let slot = Slot::default();
        assert!(!slot.is_full());
        assert_eq!(slot.put(1), None);
        assert_eq!(slot.put(2), Some(1));
        assert!(slot.is_full());
        assert_eq!(slot.take(), Some(2));
        assert_eq!(slot.take(), None);
    }

    #[test]
    fn values_left_in_a_slot_are_dropped_with_it() {
        let value = Arc::new(());
        let slot = Slot::default();
        slot.put(value.clone());
        drop(slot);
        assert_eq!(Arc::strong_count(&value), 1);
    }

    #[test]
    fn a_slot_shared_by_threads_loses_and_duplicates_nothing() {
        let slot = Arc::new(Slot::default());
        let taker = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                let mut taken = Vec::new();
                while taken.last() != Some(&9_999u32) {
                    taken.extend(slot.take());
                }
                taken
            })
        };
        let mut replaced = Vec::new();
        for value in 0..10_000u32 {
            replaced.extend(slot.put(value));
        }
        let mut taken = taker.join().unwrap();
        // Every value was either taken or replaced, exactly once.
        taken.extend(replaced);
        taken.extend(slot.take());
        taken.sort();
        assert_eq!(taken, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn timing_round_trips_through_its_atomics() {
        let timing = Timing::default();
        assert!(timing.schedule().inference_since.is_none());
        let started = Instant::now();
        timing.set_inference_since(Some(started));
        timing.set_inference_time(10 * MS);
        timing.record_conversion(MS);
        let schedule = timing.schedule();
        assert_eq!(schedule.inference_since, Some(started));
        assert_eq!(schedule.inference_time, Some(10 * MS));
        assert_eq!(schedule.convert_time, Some(MS));
        timing.set_inference_since(None);
        assert!(timing.schedule().inference_since.is_none());
    }

    fn busy(started: Instant) -> Schedule {
        Schedule {
            inference_since: Some(started),
            inference_time: Some(10 * MS),
            convert_time: Some(MS),
            frame_in_hand: false,
        }
    }

    #[test]
    fn conversion_starts_so_the_frame_is_ready_as_the_inference_ends() {
        let started = Instant::now();
        let mut schedule = busy(started);
        // Predicted end 10 ms after the start, less twice the 1 ms conversion.
        assert_eq!(schedule.prepare_from(), Some(started + 8 * MS));
        assert_eq!(schedule.frame_wanted_at(started), started + 8 * MS);
        // Past that moment the frame is wanted now.
        assert_eq!(schedule.frame_wanted_at(started + 9 * MS), started + 9 * MS);
        // Nothing learnt about conversion yet: start at the predicted end.
        schedule.convert_time = None;
        assert_eq!(schedule.prepare_from(), Some(started + 10 * MS));
    }

    #[test]
    fn an_idle_model_wants_a_frame_now() {
        let now = Instant::now();
        let mut schedule = busy(now);
        schedule.inference_since = None;
        assert_eq!(schedule.prepare_from(), None);
        assert_eq!(schedule.frame_wanted_at(now), now);
        // A model not timed yet: no prediction either.
        let schedule = Schedule {
            inference_since: Some(now),
            ..Default::default()
        };
        assert_eq!(schedule.frame_wanted_at(now), now);
    }

    #[test]
    fn with_a_frame_in_hand_the_next_is_wanted_one_inference_later() {
        let started = Instant::now();
        let mut schedule = busy(started);
        schedule.frame_in_hand = true;
        // The prepared frame runs from 10 ms; the one after it is converted from 18 ms.
        assert_eq!(schedule.frame_wanted_at(started), started + 18 * MS);
        // Idle model but a frame waiting to be taken: one inference from now, less the lead.
        schedule.inference_since = None;
        assert_eq!(schedule.frame_wanted_at(started), started + 8 * MS);
    }
}
