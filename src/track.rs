//! Object tracking across inferences: stable ids by IoU association, and per-track velocities so
//! boxes can be predicted forward to frames between inferences. No GStreamer types.
//!
//! Association maximises the total IoU between detections and tracks predicted forward (Hungarian
//! method, same class only), as SORT does; each track's velocity is the smoothed change of its box
//! between matched observations.

use crate::detection::{Detection, NormalizedBox};

/// Box change per second, in normalised units: centre x/y and width/height.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Velocity {
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// A detection with the track it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub detection: Detection,
    pub track_id: u32,
    pub velocity: Velocity,
}

#[derive(Debug, Clone)]
struct Track {
    id: u32,
    class_id: i32,
    bbox: NormalizedBox,
    velocity: Velocity,
    /// Stream time of the last matched observation, in seconds.
    seen_at: f64,
    matches: u32,
}

/// Keeps tracks between inferences.
#[derive(Debug, Clone)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u32,
    /// Minimum IoU (after predicting the track forward) to continue a track.
    pub iou_threshold: f32,
    /// How long an unmatched track is kept for re-association, in seconds.
    pub lost_after: f64,
}

impl Velocity {
    /// The motion from `from` to `to` over `dt` seconds.
    pub fn between(from: &NormalizedBox, to: &NormalizedBox, dt: f32) -> Velocity {
        let centre = |b: &NormalizedBox| ((b.x_min + b.x_max) / 2.0, (b.y_min + b.y_max) / 2.0);
        let size = |b: &NormalizedBox| (b.x_max - b.x_min, b.y_max - b.y_min);
        let ((nx, ny), (ox, oy)) = (centre(to), centre(from));
        let ((nw, nh), (ow, oh)) = (size(to), size(from));
        Velocity {
            cx: (nx - ox) / dt,
            cy: (ny - oy) / dt,
            w: (nw - ow) / dt,
            h: (nh - oh) / dt,
        }
    }

    /// This velocity smoothed towards `new`, keeping `keep` (0 to 1) of it.
    pub fn blend(&self, new: &Velocity, keep: f32) -> Velocity {
        let mix = |old: f32, new: f32| old * keep + new * (1.0 - keep);
        Velocity {
            cx: mix(self.cx, new.cx),
            cy: mix(self.cy, new.cy),
            w: mix(self.w, new.w),
            h: mix(self.h, new.h),
        }
    }
}

/// How much a track and a detection overlap as candidates for [`assign`]: their IoU, or 0 when
/// they are of different classes or overlap less than `threshold`.
pub(crate) fn matching_overlap(
    same_class: bool,
    a: &NormalizedBox,
    b: &NormalizedBox,
    threshold: f32,
) -> f32 {
    let overlap = iou(a, b);
    if same_class && overlap >= threshold {
        overlap
    } else {
        0.0
    }
}

pub fn iou(a: &NormalizedBox, b: &NormalizedBox) -> f32 {
    let w = (a.x_max.min(b.x_max) - a.x_min.max(b.x_min)).max(0.0);
    let h = (a.y_max.min(b.y_max) - a.y_min.max(b.y_min)).max(0.0);
    let intersection = w * h;
    let area = |r: &NormalizedBox| (r.x_max - r.x_min).max(0.0) * (r.y_max - r.y_min).max(0.0);
    let union = area(a) + area(b) - intersection;
    if union <= 0.0 { 0.0 } else { intersection / union }
}

/// The pairing of detections (rows) with tracks (columns) that maximises the total overlap
/// (Hungarian method, from the `pathfinding` crate), as SORT does: greedy pairing can give a
/// track the wrong one of two close objects. Pairs without overlap stay unpaired.
pub(crate) fn assign(overlaps: &[Vec<f32>], tracks: usize) -> Vec<Option<usize>> {
    let detections = overlaps.len();
    let mut track_of = vec![None; detections];
    if detections == 0 || tracks == 0 {
        return track_of;
    }
    // The solver wants integer weights and no more rows than columns.
    let weight = |d: usize, t: usize| (overlaps[d][t] * 1_000_000.0).round() as i64;
    let transposed = detections > tracks;
    let (rows, columns) = if transposed {
        (tracks, detections)
    } else {
        (detections, tracks)
    };
    let mut values = Vec::with_capacity(rows * columns);
    for row in 0..rows {
        for column in 0..columns {
            values.push(if transposed {
                weight(column, row)
            } else {
                weight(row, column)
            });
        }
    }
    let Ok(matrix) = pathfinding::matrix::Matrix::from_vec(rows, columns, values) else {
        return track_of;
    };
    let (_, column_of_row) = pathfinding::kuhn_munkres::kuhn_munkres(&matrix);
    for (row, column) in column_of_row.into_iter().enumerate() {
        let (d, t) = if transposed { (column, row) } else { (row, column) };
        if overlaps[d][t] > 0.0 {
            track_of[d] = Some(t);
        }
    }
    track_of
}

/// `bbox` moved by `velocity` for `seconds` (clamped to the frame).
pub fn predict(bbox: &NormalizedBox, velocity: &Velocity, seconds: f64) -> NormalizedBox {
    predict_unclamped(bbox, velocity, seconds).clamped()
}

/// `bbox` moved by `velocity` for `seconds`, free to reach past the frame's edges.
pub fn predict_unclamped(bbox: &NormalizedBox, velocity: &Velocity, seconds: f64) -> NormalizedBox {
    let t = seconds as f32;
    let (cx, cy) = ((bbox.x_min + bbox.x_max) / 2.0, (bbox.y_min + bbox.y_max) / 2.0);
    let (w, h) = (bbox.x_max - bbox.x_min, bbox.y_max - bbox.y_min);
    let (cx, cy) = (cx + velocity.cx * t, cy + velocity.cy * t);
    let (w, h) = ((w + velocity.w * t).max(0.0), (h + velocity.h * t).max(0.0));
    NormalizedBox {
        x_min: cx - w / 2.0,
        y_min: cy - h / 2.0,
        x_max: cx + w / 2.0,
        y_max: cy + h / 2.0,
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            tracks: Vec::new(),
            next_id: 1,
            iou_threshold: 0.3,
            lost_after: 1.0,
        }
    }
}

impl Tracker {
    pub fn new(iou_threshold: f32, lost_after: f64) -> Self {
        Tracker {
            iou_threshold,
            lost_after,
            ..Default::default()
        }
    }

    /// Forgets every track (after a flush or seek: the scene may be another).
    pub fn reset(&mut self) {
        self.tracks.clear();
    }

    /// Associates the detections of a frame at stream time `at` (seconds) with the tracks and
    /// returns them with their track ids and velocities.
    pub fn update(&mut self, detections: Vec<Detection>, at: f64) -> Vec<Tracked> {
        self.tracks
            .retain(|t| at - t.seen_at <= self.lost_after && at >= t.seen_at);
        // Overlap of every detection with every track predicted to this time (0: another class
        // or too little overlap to be the same object).
        let overlaps: Vec<Vec<f32>> = detections
            .iter()
            .map(|detection| {
                self.tracks
                    .iter()
                    .map(|track| {
                        let expected = predict(&track.bbox, &track.velocity, at - track.seen_at);
                        let same_class = track.class_id == detection.class_id;
                        matching_overlap(same_class, &expected, &detection.bbox, self.iou_threshold)
                    })
                    .collect()
            })
            .collect();
        let track_of = assign(&overlaps, self.tracks.len());
        let mut tracked = Vec::with_capacity(detections.len());
        for (detection, track_index) in detections.into_iter().zip(track_of) {
            let track = match track_index {
                Some(index) => {
                    let track = &mut self.tracks[index];
                    let dt = (at - track.seen_at) as f32;
                    if dt > 0.0 {
                        let measured = Velocity::between(&track.bbox, &detection.bbox, dt);
                        // The first measurement is taken as it is; later ones are smoothed.
                        let keep = if track.matches <= 1 { 0.0 } else { 0.5 };
                        track.velocity = track.velocity.blend(&measured, keep);
                    }
                    track.bbox = detection.bbox;
                    track.seen_at = at;
                    track.matches += 1;
                    track.clone()
                }
                None => {
                    let track = Track {
                        id: self.next_id,
                        class_id: detection.class_id,
                        bbox: detection.bbox,
                        velocity: Velocity::default(),
                        seen_at: at,
                        matches: 1,
                    };
                    self.next_id = self.next_id.wrapping_add(1).max(1);
                    self.tracks.push(track.clone());
                    track
                }
            };
            tracked.push(Tracked {
                detection,
                track_id: track.id,
                velocity: track.velocity,
            });
        }
        tracked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f32, y: f32, class_id: i32) -> Detection {
        Detection {
            class_id,
            label: class_id.to_string(),
            confidence: 0.9,
            bbox: NormalizedBox {
                x_min: x,
                y_min: y,
                x_max: x + 0.1,
                y_max: y + 0.2,
            },
        }
    }

    #[test]
    fn assignment_maximises_total_overlap_where_greedy_would_not() {
        // Greedy takes detection 0 for track 0 (0.9) and leaves detection 1 without a track.
        let overlaps = vec![vec![0.9, 0.8], vec![0.85, 0.0]];
        assert_eq!(assign(&overlaps, 2), vec![Some(1), Some(0)]);
        // More detections than tracks, and a detection that overlaps nothing.
        let overlaps = vec![vec![0.0], vec![0.6], vec![0.4]];
        assert_eq!(assign(&overlaps, 1), vec![None, Some(0), None]);
        assert_eq!(assign(&[vec![0.0, 0.0]], 2), vec![None]);
        assert_eq!(assign(&[], 3), Vec::<Option<usize>>::new());
    }

    #[test]
    fn ids_stay_with_moving_objects_and_crossing_classes_do_not_swap() {
        let mut tracker = Tracker::default();
        let mut ids = Vec::new();
        for step in 0..30 {
            let t = step as f64 * 0.1;
            // Two objects move towards each other horizontally; a third of another class sits still.
            let a = at(0.1 + 0.01 * step as f32, 0.4, 0);
            let b = at(0.6 - 0.01 * step as f32, 0.4, 0);
            let c = at(0.35, 0.1, 2);
            let tracked = tracker.update(vec![a, b, c], t);
            ids.push(tracked.iter().map(|t| t.track_id).collect::<Vec<_>>());
        }
        assert!(ids.iter().all(|frame| frame == &ids[0]), "{ids:?}");
        assert_eq!(ids[0].len(), 3);
    }

    #[test]
    fn velocity_predicts_the_next_position() {
        let mut tracker = Tracker::default();
        tracker.update(vec![at(0.10, 0.3, 0)], 0.0);
        let tracked = tracker.update(vec![at(0.15, 0.3, 0)], 0.5);
        let v = tracked[0].velocity;
        assert!((v.cx - 0.1).abs() < 1e-5 && v.cy.abs() < 1e-5, "{v:?}");
        let ahead = predict(&tracked[0].detection.bbox, &v, 0.5);
        assert!((ahead.x_min - 0.20).abs() < 1e-5, "{ahead:?}");
    }

    #[test]
    fn lost_tracks_are_kept_for_a_while_then_replaced() {
        let mut tracker = Tracker::new(0.3, 1.0);
        let first = tracker.update(vec![at(0.2, 0.2, 0)], 0.0)[0].track_id;
        assert!(tracker.update(vec![], 0.5).is_empty());
        assert_eq!(
            tracker.update(vec![at(0.2, 0.2, 0)], 0.9)[0].track_id,
            first,
            "back within the time"
        );
        assert!(tracker.update(vec![], 1.5).is_empty());
        let later = tracker.update(vec![at(0.2, 0.2, 0)], 2.5)[0].track_id;
        assert_ne!(later, first, "gone too long: a new track");
        tracker.reset();
        assert_ne!(tracker.update(vec![at(0.2, 0.2, 0)], 2.6)[0].track_id, later);
    }

    #[test]
    fn iou_of_boxes() {
        let a = at(0.0, 0.0, 0).bbox;
        let half = NormalizedBox { x_min: 0.05, ..a };
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert!((iou(&a, &half) - 0.5).abs() < 1e-6);
        assert_eq!(iou(&a, &at(0.5, 0.5, 0).bbox), 0.0);
    }
}
