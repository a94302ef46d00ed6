//! Measurements that take turns in short slices, so a drift in the machine's speed falls on all alike.

use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::Config;

/// Events counted over one turn, from the first event after the turn started to the first after
/// its time was up, so the count covers whole intervals between events.
#[derive(Clone, Copy, Default)]
pub struct Tally {
    pub events: u64,
    /// A second counter read at the same two moments (the video's frames while counting
    /// inferences).
    pub also: u64,
    pub seconds: f64,
}

impl Tally {
    pub fn rate(&self) -> f64 {
        self.per_second(self.events)
    }

    pub fn also_rate(&self) -> f64 {
        self.per_second(self.also)
    }

    pub fn per_second(&self, count: u64) -> f64 {
        if self.seconds > 0.0 {
            count as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn add(&mut self, other: Tally) {
        self.events += other.events;
        self.also += other.also;
        self.seconds += other.seconds;
    }
}

/// A counter the benchmark reads: an element's property or a pad probe's count.
pub type Counter = Box<dyn Fn() -> u64>;

/// Waits until `count` moves on; returns its new value and when. A stalled pipeline ends the
/// benchmark instead of hanging it.
pub fn next_event(count: &dyn Fn() -> u64) -> (u64, Instant) {
    let (before, since) = (count(), Instant::now());
    loop {
        let now = count();
        if now != before {
            return (now, Instant::now());
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "no event in 30 s: the pipeline stalled"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// A pipeline that plays only during its turns and is paused between them, so that several
/// measurements take turns in short slices: a change in this shared machine's speed, which
/// moves figures by several per cent over seconds, then falls on all of them alike.
pub struct TurnPipeline {
    pub pipeline: gst::Pipeline,
    pub count: Counter,
    pub also: Option<Counter>,
}

impl TurnPipeline {
    pub fn turn(&self, seconds: f64) -> Tally {
        self.pipeline.set_state(gst::State::Playing).expect("plays");
        let also = || self.also.as_ref().map_or(0, |also| also());
        let (first, start) = next_event(&*self.count);
        let also_first = also();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let (last, end) = next_event(&*self.count);
        let also_last = also();
        self.pipeline.set_state(gst::State::Paused).expect("pauses");
        Tally {
            events: last - first,
            also: also_last - also_first,
            seconds: (end - start).as_secs_f64(),
        }
    }
}

impl Drop for TurnPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Turn length and number of cycles of the side-by-side tables.
pub fn turns(config: &Config) -> (f64, usize) {
    if config.full { (1.0, 20) } else { (0.2, 1) }
}
