//! `tracking=visual`: the element's side of the visual tracker (`crate::visual`).
//!
//! In async mode a thread of its own follows the objects through every frame it can: the
//! streaming thread drops each buffer (a reference, no pixels touched) into a one-slot mailbox
//! that a newer frame replaces, so a tracker that falls behind skips frames instead of lagging;
//! the inference thread hands it each result, which it carries from the analysed frame to the
//! newest before matching; and it publishes the tracked boxes, stamped with the frame they belong
//! to, where the streaming thread reads results. Nothing here makes the streaming thread wait:
//! the tracker polls its mailbox instead of being woken, so offering a frame is one atomic swap.
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
const POLL_IDLE: Duration = Duration::from_millis(100);

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
    /// The streaming thread offers a frame: one atomic swap, never a wait.
    pub fn offer(&self, frame: FeedFrame) {
        drop(self.frames.put(frame));
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

/// How the pixels of `info`'s format make a grey image: the plane and its layout.
fn layout_of(info: &gst_video::VideoInfo) -> Option<(usize, PixelLayout)> {
    use gst_video::VideoFormat::*;
    let layout = match info.format() {
        I420 | Yv12 | Nv12 | Nv21 | Y42b | Y444 | Gray8 => PixelLayout::Luma,
        Rgb | Bgr => PixelLayout::Packed3,
        Rgba | Bgra | Argb | Abgr | Rgbx | Bgrx | Xrgb | Xbgr => PixelLayout::Packed4,
        Yuy2 => PixelLayout::Yuy2,
        Uyvy => PixelLayout::Uyvy,
        _ => return None,
    };
    Some((0, layout))
}

/// A grey copy of a frame for the tracker.
pub fn grey_frame(buffer: &gst::BufferRef, info: &gst_video::VideoInfo) -> Result<GreyImage, FlowError> {
    let (plane, layout) = layout_of(info)
        .ok_or_else(|| FlowError(format!("no grey picture from {:?} frames", info.format())))?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|_| FlowError("the frame could not be mapped".into()))?;
    let data = frame
        .plane_data(plane as u32)
        .map_err(|_| FlowError("the frame has no picture plane".into()))?;
    let stride = frame.plane_stride()[plane] as usize;
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

/// The tracker thread: follows objects through the frames offered and publishes their boxes.
pub fn run(element: &glib::WeakRef<gst::Element>, feed: &VisualFeed, handoff: &Handoff, stats: &Statistics) {
    let _ = feed.thread.set(std::thread::current());
    let epoch = Instant::now();
    let mut tracker = VisualTracker::new(VisualSettings::default());
    let mut generation = 0;
    let mut pending: Vec<DetectionBatch> = Vec::new();
    let mut last_frame = Instant::now();
    let mut warned = false;
    while !feed.closed.load(Ordering::Acquire) {
        pending.append(&mut lock(&feed.detections));
        let Some(frame) = feed.frames.take() else {
            let busy = last_frame.elapsed() < Duration::from_secs(1);
            std::thread::park_timeout(if busy { POLL_BUSY } else { POLL_IDLE });
            continue;
        };
        last_frame = Instant::now();
        if frame.generation != generation {
            // A flush or seek: another part of the stream, maybe another scene.
            tracker.reset();
            pending.retain(|b| b.generation == frame.generation);
            generation = frame.generation;
        }
        let grey = grey_frame(&frame.buffer, &frame.info);
        let pts = frame.buffer.pts();
        drop(frame.buffer);
        let outcome = grey.and_then(|grey| tracker.step(seconds(pts, epoch), grey));
        match outcome {
            Ok(StepOutcome::SceneChanged) => {
                if let Some(element) = element.upgrade() {
                    gst::debug!(CAT, obj = element, "Scene change at {:?}: tracks forgotten", pts);
                }
            }
            Ok(StepOutcome::Followed) => {}
            Err(e) => {
                if !warned && let Some(element) = element.upgrade() {
                    gst::element_warning!(
                        element,
                        gst::StreamError::Failed,
                        ("Visual tracking failed: {}", e)
                    );
                }
                warned = true;
                continue;
            }
        }
        stats.frames_tracked.fetch_add(1, Ordering::Relaxed);
        // Results whose frame the tracker has reached (or passed) are carried forward and matched.
        let reached = tracker.newest().unwrap_or(f64::MIN);
        let (due, later): (Vec<_>, Vec<_>) = pending
            .drain(..)
            .filter(|b| b.generation == generation)
            .partition(|b| seconds(b.pts, epoch) <= reached + 1e-6);
        pending = later;
        for batch in due {
            tracker.settings.lost_after = batch.lost_after;
            if let Err(e) = tracker.detect(seconds(batch.pts, epoch), batch.detections)
                && let Some(element) = element.upgrade()
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
        handoff.publish(generation, tracked_result(&tracker, frame.seq, pts));
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
