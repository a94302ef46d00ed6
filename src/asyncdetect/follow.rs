//! `tracking=visual`: the element's side of the visual tracker (`crate::visual`).
//!
//! In async mode a thread of its own follows the objects through every frame it can: the
//! streaming thread drops each buffer (a reference, no pixels touched) into a one-slot mailbox
//! whenever the tracker has taken the last one, so a tracker that falls behind skips frames
//! instead of lagging; the inference thread hands it each result, which it carries from the
//! analysed frame to the newest before matching; and it publishes the tracked boxes, stamped with
//! the frame they belong to, where the streaming thread reads results. Nothing here makes the
//! streaming thread wait: the tracker polls its mailbox instead of being woken, so offering a
//! frame is an atomic load and swap.
//!
//! In sync mode the streaming thread drives a tracker itself, frame by frame, so the boxes of
//! every buffer are the same on every machine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::glib;
use gst_video::prelude::*;

use super::CAT;
use super::handoff::{Handoff, Slot};
use super::meta::{InferenceResult, VISUAL_PREDICTION};
use super::stats::Statistics;
use crate::detection::Detection;
use crate::lock;
use crate::visual::{
    FlowError, GREY_SIDE, GreyImage, PixelLayout, StepOutcome, VisualSettings, VisualTracker,
};

/// How often an idle tracker looks for a new frame while frames are coming, and while not.
const POLL_BUSY: Duration = Duration::from_millis(2);
const POLL_IDLE: Duration = Duration::from_millis(250);

/// A frame offered to the tracker thread.
pub struct FeedFrame {
    pub buffer: gst::Buffer,
    pub info: gst_video::VideoInfo,
    pub seq: u64,
    pub generation: u64,
}

/// A result handed over by the inference thread: the detections of the frame at `pts`.
pub struct DetectionBatch {
    pub pts: Option<gst::ClockTime>,
    pub seq: u64,
    pub generation: u64,
    pub detections: Vec<Detection>,
    /// How long a track no detection confirms is kept, in seconds (`track-lost-time`).
    pub lost_after: f64,
}

/// The tracker thread's mailboxes.
#[derive(Default)]
pub struct VisualFeed {
    frames: Slot<FeedFrame>,
    /// Worker threads only (the inference thread puts, the tracker takes).
    detections: Mutex<Vec<DetectionBatch>>,
    thread: OnceLock<std::thread::Thread>,
    closed: AtomicBool,
}

impl VisualFeed {
    /// The streaming thread offers a frame: an atomic load and swap, never a wait. While the
    /// tracker has not taken the last frame offered (it is behind), frames are not offered, so the
    /// streaming thread never releases a frame the tracker skipped (the last release of a frame
    /// can return it to its pool or free it, which is not the streaming thread's to pay for).
    pub fn offer(&self, frame: impl FnOnce() -> FeedFrame) {
        if !self.frames.is_full() {
            drop(self.frames.put(frame()));
        }
    }

    /// The inference thread hands over a result.
    pub fn detected(&self, batch: DetectionBatch) {
        lock(&self.detections).push(batch);
    }

    /// Stopping: the tracker thread ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        drop(self.frames.take());
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// A flush: the waiting frame and results are dropped (the tracker sees the new generation).
    pub fn flush(&self) {
        drop(self.frames.take());
        lock(&self.detections).clear();
    }
}

/// How the first plane of `info`'s format (luma, or the packed pixels) makes a grey image.
fn layout_of(info: &gst_video::VideoInfo) -> Option<PixelLayout> {
    use gst_video::VideoFormat::*;
    Some(match info.format() {
        I420 | Yv12 | Nv12 | Nv21 | Y42b | Y444 | Gray8 => PixelLayout::Luma,
        Rgb | Bgr => PixelLayout::Packed3,
        Rgba | Bgra | Argb | Abgr | Rgbx | Bgrx | Xrgb | Xbgr => PixelLayout::Packed4,
        Yuy2 => PixelLayout::Yuy2,
        Uyvy => PixelLayout::Uyvy,
        _ => return None,
    })
}

/// The grey copy the visual tracker makes of a frame.
pub fn grey_frame(buffer: &gst::BufferRef, info: &gst_video::VideoInfo) -> Result<GreyImage, FlowError> {
    let layout = layout_of(info)
        .ok_or_else(|| FlowError(format!("no grey picture from {:?} frames", info.format())))?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|_| FlowError("the frame could not be mapped".into()))?;
    let data = frame
        .plane_data(0)
        .map_err(|_| FlowError("the frame has no picture plane".into()))?;
    let stride = frame.plane_stride()[0] as usize;
    GreyImage::from_pixels(data, info.width(), info.height(), stride, layout, GREY_SIDE)
}

/// Stream time in seconds of a frame (its timestamp, or the time it was seen).
fn seconds(pts: Option<gst::ClockTime>, epoch: Instant) -> f64 {
    pts.map_or_else(|| epoch.elapsed().as_secs_f64(), |pts| pts.seconds_f64())
}

/// The tracked objects of the newest frame as a result to attach: moved forward from that frame
/// to each buffer's time by their measured motion.
pub fn tracked_result(tracker: &VisualTracker, seq: u64, pts: Option<gst::ClockTime>) -> InferenceResult {
    let (detections, tracks) = tracker
        .objects()
        .into_iter()
        .map(|object| (object.detection, (object.id, object.velocity)))
        .unzip();
    InferenceResult::new(seq, pts, detections, tracks, VISUAL_PREDICTION)
}

/// The tracker thread: follows objects through the frames offered, takes in results as soon as
/// it has reached their frame, and publishes the boxes after either.
pub fn run(element: &glib::WeakRef<gst::Element>, feed: &VisualFeed, handoff: &Handoff, stats: &Statistics) {
    let _ = feed.thread.set(std::thread::current());
    let mut thread = TrackerThread {
        element,
        tracker: VisualTracker::new(VisualSettings::default()),
        epoch: Instant::now(),
        generation: 0,
        pending: Vec::new(),
        newest: None,
        warned: false,
    };
    let mut last_frame = Instant::now();
    while !feed.closed.load(Ordering::Acquire) {
        thread.pending.append(&mut lock(&feed.detections));
        let mut changed = thread.take_in_results();
        match feed.frames.take() {
            Some(frame) => {
                last_frame = Instant::now();
                if thread.follow(frame) {
                    stats.frames_tracked.fetch_add(1, Ordering::Relaxed);
                    thread.take_in_results();
                    changed = true;
                }
            }
            None if !changed => {
                let busy = last_frame.elapsed() < Duration::from_secs(1);
                std::thread::park_timeout(if busy { POLL_BUSY } else { POLL_IDLE });
                continue;
            }
            None => {}
        }
        if changed && let Some((seq, pts)) = thread.newest {
            handoff.publish(thread.generation, tracked_result(&thread.tracker, seq, pts));
        }
    }
}

/// The tracker thread's state.
struct TrackerThread<'a> {
    element: &'a glib::WeakRef<gst::Element>,
    tracker: VisualTracker,
    epoch: Instant,
    /// The flush generation of the frames followed.
    generation: u64,
    /// Results whose frame the tracker has not reached yet.
    pending: Vec<DetectionBatch>,
    /// The newest frame followed: its sequence number and timestamp.
    newest: Option<(u64, Option<gst::ClockTime>)>,
    warned: bool,
}

impl TrackerThread<'_> {
    /// Follows the objects into `frame`; false if it could not be read.
    fn follow(&mut self, frame: FeedFrame) -> bool {
        if frame.generation != self.generation {
            // A flush or seek: another part of the stream, maybe another scene.
            self.tracker.reset();
            self.newest = None;
            self.generation = frame.generation;
        }
        let pts = frame.buffer.pts();
        let grey = grey_frame(&frame.buffer, &frame.info);
        drop(frame.buffer);
        match grey.and_then(|grey| self.tracker.step(seconds(pts, self.epoch), grey)) {
            Ok(outcome) => {
                if outcome == StepOutcome::SceneChanged
                    && let Some(element) = self.element.upgrade()
                {
                    gst::debug!(CAT, obj = element, "Scene change at {:?}: tracks forgotten", pts);
                }
                self.newest = Some((frame.seq, pts));
                true
            }
            Err(e) => {
                if !std::mem::replace(&mut self.warned, true)
                    && let Some(element) = self.element.upgrade()
                {
                    gst::element_warning!(
                        element,
                        gst::StreamError::Failed,
                        ("Visual tracking failed: {}", e)
                    );
                }
                false
            }
        }
    }

    /// Carries forward and matches the results whose frame the tracker has reached (or passed);
    /// returns whether there were any.
    fn take_in_results(&mut self) -> bool {
        let generation = self.generation;
        self.pending.retain(|b| b.generation >= generation);
        let Some(reached) = self.tracker.newest() else {
            return false;
        };
        let epoch = self.epoch;
        let (due, later): (Vec<_>, Vec<_>) = self
            .pending
            .drain(..)
            .partition(|b| b.generation == generation && seconds(b.pts, epoch) <= reached + 1e-6);
        self.pending = later;
        let any = !due.is_empty();
        for batch in due {
            self.tracker.settings.lost_after = batch.lost_after;
            if let Err(e) = self.tracker.detect(seconds(batch.pts, epoch), batch.detections)
                && let Some(element) = self.element.upgrade()
            {
                gst::debug!(
                    CAT,
                    obj = element,
                    "Result of frame {} not carried: {}",
                    batch.seq,
                    e
                );
            }
        }
        any
    }
}

/// Sync mode's tracker, driven by the streaming thread frame by frame.
pub struct SyncFollower {
    tracker: VisualTracker,
    generation: u64,
    epoch: Instant,
}

impl Default for SyncFollower {
    fn default() -> Self {
        SyncFollower {
            tracker: VisualTracker::new(VisualSettings::default()),
            generation: 0,
            epoch: Instant::now(),
        }
    }
}

impl SyncFollower {
    /// Follows the objects into this buffer's frame, takes in the detections made on it if the
    /// model ran, and returns what to attach.
    pub fn follow(
        &mut self,
        buffer: &gst::BufferRef,
        info: &gst_video::VideoInfo,
        seq: u64,
        generation: u64,
        lost_after: f64,
        detections: Option<Vec<Detection>>,
    ) -> Result<InferenceResult, FlowError> {
        if generation != self.generation {
            self.tracker.reset();
            self.generation = generation;
        }
        self.tracker.settings.lost_after = lost_after;
        let at = seconds(buffer.pts(), self.epoch);
        self.tracker.step(at, grey_frame(buffer, info)?)?;
        if let Some(detections) = detections {
            self.tracker.detect(at, detections)?;
        }
        Ok(tracked_result(&self.tracker, seq, buffer.pts()))
    }
}
