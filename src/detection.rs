//! What a detector found, and the user's filter over it. No GStreamer types.

use std::collections::HashSet;

/// A box in normalised frame coordinates (0..1, origin top-left), independent of the frame size so
/// one result can be attached to buffers of any resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalizedBox {
    pub x_min: f32,
    pub y_min: f32,
    pub x_max: f32,
    pub y_max: f32,
}

impl NormalizedBox {
    /// Clamps to the frame and orders the corners, so a sloppy model output never yields a negative
    /// width or a box outside the picture.
    pub fn clamped(self) -> Self {
        let clamp = |v: f32| if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
        let (x0, x1) = (clamp(self.x_min), clamp(self.x_max));
        let (y0, y1) = (clamp(self.y_min), clamp(self.y_max));
        NormalizedBox {
            x_min: x0.min(x1),
            y_min: y0.min(y1),
            x_max: x0.max(x1),
            y_max: y0.max(y1),
        }
    }

    /// The box in pixels of a `width` x `height` frame as (x, y, w, h), rounded outwards-in so it
    /// always lies inside the frame.
    pub fn to_pixels(self, width: u32, height: u32) -> (u32, u32, u32, u32) {
        let b = self.clamped();
        let x0 = (b.x_min * width as f32).round() as u32;
        let y0 = (b.y_min * height as f32).round() as u32;
        let x1 = ((b.x_max * width as f32).round() as u32).min(width);
        let y1 = ((b.y_max * height as f32).round() as u32).min(height);
        (x0, y0, x1.saturating_sub(x0), y1.saturating_sub(y0))
    }
}

/// One detected object.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The class id as the model reports it (the labels file maps it to a name).
    pub class_id: i32,
    /// The class name, or the id as text when the labels do not name it.
    pub label: String,
    pub confidence: f32,
    pub bbox: NormalizedBox,
}

/// The user's choice of which detections to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionFilter {
    /// Detections below this confidence are dropped.
    pub threshold: f32,
    /// At most this many detections (the most confident) are kept; 0 keeps all.
    pub max_detections: usize,
    /// Keep only these labels (case-insensitive); empty keeps every class.
    pub classes: HashSet<String>,
}

impl Default for DetectionFilter {
    fn default() -> Self {
        DetectionFilter {
            threshold: 0.5,
            max_detections: 100,
            classes: HashSet::new(),
        }
    }
}

impl DetectionFilter {
    /// Parses a class list such as `"person, car"` into lower-case names; empty entries are ignored.
    pub fn parse_classes(list: &str) -> HashSet<String> {
        list.split(',')
            .map(|name| name.trim().to_lowercase())
            .filter(|name| !name.is_empty())
            .collect()
    }

    /// Keeps what passes the threshold and class list, most confident first, at most `max_detections`.
    pub fn apply(&self, mut detections: Vec<Detection>) -> Vec<Detection> {
        detections.retain(|d| {
            d.confidence >= self.threshold
                && (self.classes.is_empty() || self.classes.contains(&d.label.to_lowercase()))
        });
        detections.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        if self.max_detections > 0 {
            detections.truncate(self.max_detections);
        }
        detections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(label: &str, confidence: f32) -> Detection {
        Detection {
            class_id: 0,
            label: label.to_string(),
            confidence,
            bbox: NormalizedBox {
                x_min: 0.1,
                y_min: 0.1,
                x_max: 0.2,
                y_max: 0.2,
            },
        }
    }

    #[test]
    fn clamping_orders_corners_and_stays_in_frame() {
        let b = NormalizedBox {
            x_min: 1.2,
            y_min: 0.5,
            x_max: -0.1,
            y_max: f32::NAN,
        }
        .clamped();
        assert_eq!((b.x_min, b.x_max), (0.0, 1.0));
        assert_eq!((b.y_min, b.y_max), (0.0, 0.5));
    }

    #[test]
    fn pixels_for_odd_sizes_stay_inside() {
        let b = NormalizedBox {
            x_min: 0.5,
            y_min: 0.0,
            x_max: 1.0,
            y_max: 1.0,
        };
        assert_eq!(b.to_pixels(3, 7), (2, 0, 1, 7));
        assert_eq!(b.to_pixels(1, 1), (1, 0, 0, 1));
        assert_eq!(b.to_pixels(1920, 1080), (960, 0, 960, 1080));
    }

    #[test]
    fn filter_applies_threshold_classes_and_limit() {
        let filter = DetectionFilter {
            threshold: 0.4,
            max_detections: 2,
            classes: DetectionFilter::parse_classes(" Person,car,, "),
        };
        assert_eq!(filter.classes.len(), 2);
        let kept = filter.apply(vec![
            detection("person", 0.5),
            detection("dog", 0.99),
            detection("car", 0.9),
            detection("person", 0.3),
            detection("person", 0.7),
        ]);
        let summary: Vec<_> = kept.iter().map(|d| (d.label.as_str(), d.confidence)).collect();
        assert_eq!(summary, vec![("car", 0.9), ("person", 0.7)]);
    }

    #[test]
    fn zero_limit_keeps_everything() {
        let filter = DetectionFilter {
            threshold: 0.0,
            max_detections: 0,
            classes: HashSet::new(),
        };
        assert_eq!(filter.apply(vec![detection("a", 0.1); 150]).len(), 150);
    }
}
