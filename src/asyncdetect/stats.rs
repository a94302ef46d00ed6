//! The counters behind `asyncdetect`'s read-only properties, and the smoothing used for its time
//! estimates. Written by the streaming and worker threads with atomics; the rate window is the one
//! collection, pruned on every write so it never outgrows two seconds of inferences.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::engine::SessionUsers;
use crate::lock;

/// Counters behind the read-only properties. They survive stop/start until the next `start()`.
#[derive(Default)]
pub struct Statistics {
    pub frames_in: AtomicU64,
    pub frames_inferred: AtomicU64,
    pub frames_skipped: AtomicU64,
    /// Frames the worker took but did not run the model on: the picture had not changed.
    pub frames_unchanged: AtomicU64,
    /// Frames the visual tracker followed the objects through.
    pub frames_tracked: AtomicU64,
    /// Smoothed conversion + inference + decoding time, in nanoseconds.
    pub inference_latency_ns: AtomicU64,
    /// When recent inferences finished, for `inference-fps` (worker threads only).
    completions: Mutex<VecDeque<Instant>>,
    session: Mutex<SessionUsers>,
    /// What the inference server is doing for this element (`server-status`); empty when the
    /// model runs in this process.
    server_status: Mutex<String>,
}

/// `inference-fps` counts the inferences finished over this window.
const RATE_WINDOW: Duration = Duration::from_secs(2);

impl Statistics {
    pub fn reset(&self) {
        for counter in [
            &self.frames_in,
            &self.frames_inferred,
            &self.frames_skipped,
            &self.frames_unchanged,
            &self.frames_tracked,
            &self.inference_latency_ns,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        lock(&self.completions).clear();
        lock(&self.server_status).clear();
    }

    pub fn set_server_status(&self, status: String) {
        *lock(&self.server_status) = status;
    }

    pub fn server_status(&self) -> String {
        lock(&self.server_status).clone()
    }

    pub fn skipped(&self, frames: u64) {
        self.frames_skipped.fetch_add(frames, Ordering::Relaxed);
    }

    /// Elements in this process sharing this one's ONNX Runtime session (0 before it is loaded).
    pub fn session_users(&self) -> usize {
        lock(&self.session).count()
    }

    /// Lanes of the shared session open now (0 before it is loaded).
    pub fn session_lanes_open(&self) -> usize {
        lock(&self.session).lanes_open()
    }

    /// Runs of the shared session and the frames they held (see [`SessionUsers::runs`]).
    pub fn session_runs(&self) -> (u64, u64) {
        lock(&self.session).runs()
    }

    pub fn set_session(&self, users: SessionUsers) {
        *lock(&self.session) = users;
    }

    /// Inferences finished per second over the last two seconds.
    pub fn inference_fps(&self) -> f64 {
        let mut completions = lock(&self.completions);
        forget_before_window(&mut completions, Instant::now());
        completions.len() as f64 / RATE_WINDOW.as_secs_f64()
    }

    /// A model was loaded; its first run seeds the latency estimate.
    pub fn model_loaded(&self, first_run: Duration) {
        self.inference_latency_ns
            .store(nanos(first_run), Ordering::Relaxed);
    }

    /// One inference finished; `total` is its conversion, model and decoding time.
    pub fn record(&self, total: Duration) {
        self.frames_inferred.fetch_add(1, Ordering::Relaxed);
        let previous = Duration::from_nanos(self.inference_latency_ns.load(Ordering::Relaxed));
        let next = smoothed(Some(previous).filter(|p| !p.is_zero()), total);
        self.inference_latency_ns.store(nanos(next), Ordering::Relaxed);
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

/// A duration in nanoseconds, saturating.
pub fn nanos(duration: Duration) -> u64 {
    duration.as_nanos().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn latency_is_smoothed_from_the_first_sample() {
        let stats = Statistics::default();
        stats.record(Duration::from_millis(8));
        stats.record(Duration::from_millis(16));
        assert_eq!(
            stats.inference_latency_ns.load(Ordering::Relaxed),
            nanos(Duration::from_millis(9))
        );
    }
}
