//! The visual tracker (`tracking=visual`): follows every tracked object from frame to frame by
//! image motion, so boxes stay on their objects on the frames the model does not see, and carries
//! each detection, which arrives frames after the frame it was made on, forward to the newest frame
//! before matching it to the tracks (latency compensation).
//!
//! Fed small grey frames in order ([`VisualTracker::step`]) and detections stamped with the frame
//! they were made on ([`VisualTracker::detect`]); it keeps the grey frames of the last moments for
//! carrying detections forward. A scene cut (a sudden change of the brightness histogram) or a
//! change of picture size forgets the tracks. Pure logic: no GStreamer types.

pub mod flow;

use std::collections::VecDeque;

use crate::detection::{Detection, NormalizedBox};
use crate::track::{Velocity, assign, matching_overlap};
pub use flow::{FlowError, FlowSettings, GreyImage, PixelLayout};

/// Grey frames are at most this many pixels on their longer side: enough to follow objects a
/// few pixels across, cheap to follow many.
pub const GREY_SIDE: u32 = 480;

/// How the tracker behaves.
#[derive(Debug, Clone, Copy)]
pub struct VisualSettings {
    pub flow: FlowSettings,
    /// A track no detection has confirmed for this long (seconds) is dropped.
    pub lost_after: f64,
    /// Minimum overlap of a carried detection with a track to continue it.
    pub iou_threshold: f32,
    /// Grey frames kept for carrying late detections forward (a detection older than the oldest
    /// is too late to use).
    pub history: usize,
    /// Histogram distance (0..1) above which the next frame is taken for another scene.
    pub cut_threshold: f32,
}

impl Default for VisualSettings {
    fn default() -> Self {
        VisualSettings {
            flow: FlowSettings::default(),
            lost_after: 1.0,
            iou_threshold: 0.3,
            history: 64,
            cut_threshold: 0.5,
        }
    }
}

/// A tracked object on the newest frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedObject {
    pub id: u32,
    /// The latest detection's class, label and confidence, with the box where it is now.
    pub detection: Detection,
    /// Normalised units per second, measured from the image motion.
    pub velocity: Velocity,
}

/// What [`VisualTracker::step`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Followed,
    /// Another scene, or another picture size: every track was forgotten.
    SceneChanged,
}

struct Frame {
    /// Stream time, seconds.
    at: f64,
    image: GreyImage,
    histogram: [f32; 16],
}

#[derive(Debug, Clone)]
struct Track {
    id: u32,
    detection: Detection,
    /// Where the object is on the newest frame (may reach past the picture's edges).
    bbox: NormalizedBox,
    velocity: Velocity,
    /// When a detection last confirmed it, seconds.
    confirmed_at: f64,
}

pub struct VisualTracker {
    pub settings: VisualSettings,
    frames: VecDeque<Frame>,
    tracks: Vec<Track>,
    next_id: u32,
}

impl VisualTracker {
    pub fn new(settings: VisualSettings) -> Self {
        VisualTracker {
            settings,
            frames: VecDeque::new(),
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// Forgets tracks and frames (a flush or seek).
    pub fn reset(&mut self) {
        self.frames.clear();
        self.tracks.clear();
    }

    /// Stream time of the newest frame.
    pub fn newest(&self) -> Option<f64> {
        self.frames.back().map(|f| f.at)
    }

    /// The next frame, at stream time `at` seconds: every track follows its object into it.
    pub fn step(&mut self, at: f64, image: GreyImage) -> Result<StepOutcome, FlowError> {
        let histogram = image.histogram();
        let outcome = match self.frames.back() {
            Some(last)
                if last.image.width() != image.width()
                    || last.image.height() != image.height()
                    || distance(&last.histogram, &histogram) > self.settings.cut_threshold
                    || at < last.at =>
            {
                self.reset();
                StepOutcome::SceneChanged
            }
            Some(last) => {
                let boxes: Vec<NormalizedBox> = self.tracks.iter().map(|t| t.bbox).collect();
                let carried = flow::carry(&last.image, &image, &boxes, &self.settings.flow)?;
                let dt = (at - last.at) as f32;
                for (track, moved) in self.tracks.iter_mut().zip(carried) {
                    match moved {
                        Some(moved) => {
                            if dt > 0.0 {
                                let measured = Velocity::between(&track.bbox, &moved, dt);
                                track.velocity = track.velocity.blend(&measured, 0.5);
                            }
                            track.bbox = moved;
                        }
                        // Not followed (hidden, too small, no texture): it keeps going as it was.
                        None => {
                            track.bbox =
                                crate::track::predict_unclamped(&track.bbox, &track.velocity, dt as f64)
                        }
                    }
                }
                StepOutcome::Followed
            }
            None => StepOutcome::Followed,
        };
        let lost_after = self.settings.lost_after;
        self.tracks
            .retain(|t| at - t.confirmed_at <= lost_after && visible(&t.bbox));
        // Only the newest frame is followed from next: older ones keep their picture, not its
        // pyramid.
        if let Some(last) = self.frames.back_mut() {
            last.image.forget_pyramid();
        }
        self.frames.push_back(Frame { at, image, histogram });
        while self.frames.len() > self.settings.history.max(1) {
            self.frames.pop_front();
        }
        Ok(outcome)
    }

    /// The detections the model made on the frame at stream time `at`: carried forward through the
    /// frames seen since, then matched to the tracks (ids kept). Returns false (and changes nothing)
    /// when that frame is no longer known: too old, or before a scene change.
    pub fn detect(&mut self, at: f64, detections: Vec<Detection>) -> Result<bool, FlowError> {
        // The frame the model saw: the last one at or before `at` (frames the tracker skipped
        // are not in the history).
        let Some(start) = self.frames.iter().rposition(|f| f.at <= at + 1e-6) else {
            return Ok(false);
        };
        if self.frames[start].at < at - 0.5 {
            return Ok(false);
        }
        let mut boxes: Vec<NormalizedBox> = detections.iter().map(|d| d.bbox).collect();
        let mut velocities = vec![Velocity::default(); boxes.len()];
        let newest = self.frames.len() - 1;
        for pair in start..newest {
            let (from, to) = (&self.frames[pair], &self.frames[pair + 1]);
            let dt = (to.at - from.at) as f32;
            let carried = flow::carry(&from.image, &to.image, &boxes, &self.settings.flow)?;
            // Made for this carry only (the newest keeps its own: the next frame is followed from it).
            self.frames[pair].image.forget_pyramid();
            for ((bbox, velocity), moved) in boxes.iter_mut().zip(&mut velocities).zip(carried) {
                if let Some(moved) = moved {
                    if dt > 0.0 {
                        *velocity = Velocity::between(bbox, &moved, dt);
                    }
                    *bbox = moved;
                }
            }
        }
        let now = self.frames.back().map_or(at, |f| f.at);
        let overlaps: Vec<Vec<f32>> = detections
            .iter()
            .zip(&boxes)
            .map(|(detection, bbox)| {
                self.tracks
                    .iter()
                    .map(|track| {
                        let same_class = track.detection.class_id == detection.class_id;
                        matching_overlap(same_class, &track.bbox, bbox, self.settings.iou_threshold)
                    })
                    .collect()
            })
            .collect();
        let track_of = assign(&overlaps, self.tracks.len());
        for (((detection, bbox), velocity), track) in
            detections.into_iter().zip(boxes).zip(velocities).zip(track_of)
        {
            match track {
                Some(index) => {
                    let track = &mut self.tracks[index];
                    track.detection = detection;
                    track.bbox = bbox;
                    track.confirmed_at = now;
                }
                None => {
                    self.tracks.push(Track {
                        id: self.next_id,
                        detection,
                        bbox,
                        velocity,
                        confirmed_at: now,
                    });
                    self.next_id = self.next_id.wrapping_add(1).max(1);
                }
            }
        }
        Ok(true)
    }

    /// The tracked objects on the newest frame, boxes clamped to the picture.
    pub fn objects(&self) -> Vec<TrackedObject> {
        self.tracks
            .iter()
            .map(|track| TrackedObject {
                id: track.id,
                detection: Detection {
                    bbox: track.bbox.clamped(),
                    ..track.detection.clone()
                },
                velocity: track.velocity,
            })
            .collect()
    }
}

fn visible(bbox: &NormalizedBox) -> bool {
    let clamped = bbox.clamped();
    clamped.x_max - clamped.x_min > 0.0 && clamped.y_max - clamped.y_min > 0.0
}

/// Half the L1 distance between two histograms of shares: 0 (same) to 1 (no overlap).
fn distance(a: &[f32; 16], b: &[f32; 16]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 320;
    const H: u32 = 180;

    /// A fixed pseudo-random texture value at (x, y): blocky, so it has corners to follow.
    fn texture(x: i32, y: i32, seed: u32) -> u8 {
        let (bx, by) = ((x.div_euclid(4)) as u32, (y.div_euclid(4)) as u32);
        let mut h =
            bx.wrapping_mul(374_761_393) ^ by.wrapping_mul(668_265_263) ^ seed.wrapping_mul(2_246_822_519);
        h = (h ^ (h >> 13)).wrapping_mul(1_274_126_177);
        (h >> 24) as u8
    }

    /// A flat grey background with a textured 60x40 square whose top-left corner is at (x, y).
    fn scene(x: f32, y: f32, seed: u32) -> GreyImage {
        let mut pixels = vec![128u8; (W * H) as usize];
        let (x0, y0) = (x.round() as i32, y.round() as i32);
        for row in 0..40 {
            for column in 0..60 {
                let (px, py) = (x0 + column, y0 + row);
                if px >= 0 && py >= 0 && (px as u32) < W && (py as u32) < H {
                    pixels[(py as u32 * W + px as u32) as usize] = texture(column, row, seed);
                }
            }
        }
        GreyImage::from_grey(W, H, &pixels).unwrap()
    }

    fn square_at(x: f32, y: f32) -> NormalizedBox {
        NormalizedBox {
            x_min: x / W as f32,
            y_min: y / H as f32,
            x_max: (x + 60.0) / W as f32,
            y_max: (y + 40.0) / H as f32,
        }
    }

    fn detection(bbox: NormalizedBox) -> Detection {
        Detection {
            class_id: 0,
            label: "person".into(),
            confidence: 0.9,
            bbox,
        }
    }

    fn left_error_px(object: &TrackedObject, x: f32) -> f32 {
        (object.detection.bbox.x_min * W as f32 - x).abs()
    }

    #[test]
    fn a_box_follows_its_object_between_detections_and_a_late_detection_is_carried_forward() {
        let mut tracker = VisualTracker::new(VisualSettings::default());
        let speed = 3.0; // pixels a frame, to the right
        let x = |frame: u32| 40.0 + speed * frame as f32;
        tracker.step(0.0, scene(x(0), 60.0, 1)).unwrap();
        for frame in 1..=30u32 {
            tracker
                .step(frame as f64 / 30.0, scene(x(frame), 60.0, 1))
                .unwrap();
            if frame == 3 {
                // The model saw frame 0; its result arrives now, three frames later.
                assert!(
                    tracker
                        .detect(0.0, vec![detection(square_at(x(0), 60.0))])
                        .unwrap()
                );
            }
            if frame >= 3 {
                let objects = tracker.objects();
                assert_eq!(objects.len(), 1, "frame {frame}");
                assert_eq!(objects[0].id, 1);
                let error = left_error_px(&objects[0], x(frame));
                assert!(error < 1.0, "frame {frame}: {error} px off");
            }
        }
        // The velocity is the object's: 3 px a frame at 30 frames a second.
        let velocity = tracker.objects()[0].velocity.cx * W as f32 / 30.0;
        assert!((velocity - speed).abs() < 0.3, "{velocity}");
    }

    #[test]
    fn a_static_scene_does_not_drift() {
        let mut tracker = VisualTracker::new(VisualSettings::default());
        tracker.step(0.0, scene(100.0, 50.0, 2)).unwrap();
        tracker
            .detect(0.0, vec![detection(square_at(100.0, 50.0))])
            .unwrap();
        for frame in 1..=60u32 {
            tracker.step(frame as f64 / 60.0, scene(100.0, 50.0, 2)).unwrap();
        }
        let objects = tracker.objects();
        assert!(left_error_px(&objects[0], 100.0) < 0.05);
    }

    #[test]
    fn a_scene_cut_forgets_the_tracks_and_a_detection_from_before_it_is_dropped() {
        let mut tracker = VisualTracker::new(VisualSettings::default());
        tracker.step(0.0, scene(100.0, 50.0, 3)).unwrap();
        tracker
            .detect(0.0, vec![detection(square_at(100.0, 50.0))])
            .unwrap();
        let dark = GreyImage::from_grey(W, H, &vec![10u8; (W * H) as usize]).unwrap();
        assert_eq!(tracker.step(0.1, dark).unwrap(), StepOutcome::SceneChanged);
        assert!(tracker.objects().is_empty());
        assert!(
            !tracker
                .detect(0.0, vec![detection(square_at(100.0, 50.0))])
                .unwrap()
        );
        // Detections after the cut start new ids.
        assert!(
            tracker
                .detect(0.1, vec![detection(square_at(10.0, 10.0))])
                .unwrap()
        );
        assert_eq!(tracker.objects()[0].id, 2);
    }

    #[test]
    fn matched_detections_keep_their_ids_and_unconfirmed_tracks_expire() {
        let mut tracker = VisualTracker::new(VisualSettings {
            lost_after: 0.5,
            ..Default::default()
        });
        tracker.step(0.0, scene(50.0, 50.0, 4)).unwrap();
        tracker
            .detect(0.0, vec![detection(square_at(50.0, 50.0))])
            .unwrap();
        for frame in 1..=10u32 {
            let x = 50.0 + 2.0 * frame as f32;
            tracker.step(frame as f64 / 30.0, scene(x, 50.0, 4)).unwrap();
        }
        // A detection of the same object, on the newest frame: same id.
        let newest = tracker.newest().unwrap();
        tracker
            .detect(newest, vec![detection(square_at(70.0, 50.0))])
            .unwrap();
        assert_eq!(
            tracker.objects().iter().map(|o| o.id).collect::<Vec<_>>(),
            vec![1]
        );
        // Nothing confirms it for longer than lost_after: gone.
        for frame in 11..=30u32 {
            tracker.step(frame as f64 / 30.0, scene(70.0, 50.0, 4)).unwrap();
        }
        assert!(tracker.objects().is_empty());
    }

    #[test]
    fn an_object_leaving_the_picture_is_dropped() {
        let mut tracker = VisualTracker::new(VisualSettings::default());
        tracker.step(0.0, scene(200.0, 60.0, 5)).unwrap();
        tracker
            .detect(0.0, vec![detection(square_at(200.0, 60.0))])
            .unwrap();
        let mut gone_at = None;
        for frame in 1..=30u32 {
            let x = 200.0 + 6.0 * frame as f32;
            tracker.step(frame as f64 / 30.0, scene(x, 60.0, 5)).unwrap();
            if tracker.objects().is_empty() && gone_at.is_none() {
                gone_at = Some(x);
            }
        }
        let gone_at = gone_at.expect("the box left with its object");
        assert!(gone_at <= W as f32 + 60.0, "{gone_at}");
    }

    #[test]
    fn a_box_too_small_to_follow_stays_until_a_result_confirms_it_or_it_expires() {
        let mut tracker = VisualTracker::new(VisualSettings {
            lost_after: 0.5,
            ..Default::default()
        });
        let tiny = NormalizedBox {
            x_min: 100.0 / W as f32,
            y_min: 60.0 / H as f32,
            x_max: 104.0 / W as f32,
            y_max: 64.0 / H as f32,
        };
        tracker.step(0.0, scene(100.0, 50.0, 6)).unwrap();
        tracker.detect(0.0, vec![detection(tiny)]).unwrap();
        for frame in 1..=10u32 {
            tracker.step(frame as f64 / 30.0, scene(100.0, 50.0, 6)).unwrap();
        }
        let objects = tracker.objects();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].detection.bbox, tiny);
        for frame in 11..=20u32 {
            tracker.step(frame as f64 / 30.0, scene(100.0, 50.0, 6)).unwrap();
        }
        assert!(tracker.objects().is_empty());
    }

    #[test]
    fn a_hidden_object_keeps_its_course_and_its_id() {
        let mut tracker = VisualTracker::new(VisualSettings::default());
        let x = |frame: u32| 40.0 + 3.0 * frame as f32;
        tracker.step(0.0, scene(x(0), 60.0, 7)).unwrap();
        tracker
            .detect(0.0, vec![detection(square_at(x(0), 60.0))])
            .unwrap();
        let flat = || GreyImage::from_grey(W, H, &vec![128u8; (W * H) as usize]).unwrap();
        for frame in 1..=20u32 {
            // Frames 8 to 11: hidden behind a plain wall (nothing to follow).
            let picture = if (8..12).contains(&frame) {
                flat()
            } else {
                scene(x(frame), 60.0, 7)
            };
            tracker.step(frame as f64 / 30.0, picture).unwrap();
        }
        let objects = tracker.objects();
        assert_eq!(objects.len(), 1);
        let error = left_error_px(&objects[0], x(20));
        assert!(error < 3.0, "{error} px off after the occlusion");
        tracker
            .detect(20.0 / 30.0, vec![detection(square_at(x(20), 60.0))])
            .unwrap();
        assert_eq!(
            tracker.objects().iter().map(|o| o.id).collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn frames_of_every_layout_make_the_same_grey_picture_size() {
        let (width, height) = (64u32, 36u32);
        for (layout, bytes) in [
            (PixelLayout::Luma, 1usize),
            (PixelLayout::Packed3, 3),
            (PixelLayout::Packed4, 4),
            (PixelLayout::Yuy2, 2),
            (PixelLayout::Uyvy, 2),
        ] {
            let stride = width as usize * bytes + 8;
            let data = vec![100u8; stride * height as usize];
            let image = GreyImage::from_pixels(&data, width, height, stride, layout, 32).unwrap();
            assert_eq!((image.width(), image.height()), (32, 18), "{layout:?}");
        }
        // Too little data is an error, not a read past the end.
        assert!(GreyImage::from_pixels(&[0u8; 10], 64, 36, 64, PixelLayout::Luma, 32).is_err());
    }
}
