//! What a detector found, and the user's filter over it. No GStreamer types.

use std::collections::{HashMap, HashSet};

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
    /// Per-class thresholds (lower-case label → minimum confidence) overriding `threshold`.
    pub class_thresholds: HashMap<String, f32>,
    /// `threshold` is the default, not the user's: a model family with its own default may
    /// replace it.
    pub threshold_is_default: bool,
}

impl Default for DetectionFilter {
    fn default() -> Self {
        DetectionFilter {
            threshold: 0.5,
            max_detections: 100,
            classes: HashSet::new(),
            class_thresholds: HashMap::new(),
            threshold_is_default: true,
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

    /// Parses `"person=0.5, car=0.4"` into lower-case labels and thresholds in 0..=1.
    pub fn parse_class_thresholds(list: &str) -> Result<HashMap<String, f32>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (label, value) = entry
                    .rsplit_once('=')
                    .ok_or_else(|| format!("`{entry}` is not `label=threshold`"))?;
                let value: f32 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{}` in `{entry}` is not a number", value.trim()))?;
                if !(0.0..=1.0).contains(&value) {
                    return Err(format!(
                        "threshold {value} for `{}` is outside 0..1",
                        label.trim()
                    ));
                }
                Ok((label.trim().to_lowercase(), value))
            })
            .collect()
    }

    /// The class names this filter mentions (`classes` and `class_thresholds`) that `known` does
    /// not accept, sorted: a misspelt name silently matches nothing otherwise.
    pub fn unknown_classes(&self, known: impl Fn(&str) -> bool) -> Vec<String> {
        let mut unknown: Vec<String> = self
            .classes
            .iter()
            .chain(self.class_thresholds.keys())
            .filter(|name| !known(name))
            .cloned()
            .collect();
        unknown.sort();
        unknown.dedup();
        unknown
    }

    /// Keeps what passes the threshold (its class's own, if set) and class list, most confident
    /// first, at most `max_detections`.
    pub fn apply(&self, mut detections: Vec<Detection>) -> Vec<Detection> {
        detections.retain(|d| {
            let label = d.label.to_lowercase();
            let threshold = self
                .class_thresholds
                .get(&label)
                .copied()
                .unwrap_or(self.threshold);
            d.confidence >= threshold && (self.classes.is_empty() || self.classes.contains(&label))
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

    #[test]
    fn unknown_classes_are_named_whatever_the_case() {
        let filter = DetectionFilter {
            classes: DetectionFilter::parse_classes("Persn, car, person"),
            class_thresholds: DetectionFilter::parse_class_thresholds("bus=0.4, car=0.3").unwrap(),
            ..Default::default()
        };
        let known = |name: &str| ["person", "car"].iter().any(|k| k.eq_ignore_ascii_case(name));
        assert_eq!(
            filter.unknown_classes(known),
            vec!["bus".to_string(), "persn".to_string()]
        );
        assert!(DetectionFilter::default().unknown_classes(|_| false).is_empty());
    }

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
            ..Default::default()
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
    fn class_thresholds_override_the_threshold() {
        let thresholds =
            DetectionFilter::parse_class_thresholds(" Person=0.8, traffic light = 0.2 ,").unwrap();
        assert_eq!(thresholds.len(), 2);
        assert_eq!(thresholds["traffic light"], 0.2);
        let filter = DetectionFilter {
            threshold: 0.5,
            max_detections: 0,
            class_thresholds: thresholds,
            ..Default::default()
        };
        let kept = filter.apply(vec![
            detection("person", 0.7),
            detection("person", 0.9),
            detection("traffic light", 0.3),
            detection("car", 0.4),
            detection("car", 0.6),
        ]);
        let summary: Vec<_> = kept.iter().map(|d| (d.label.as_str(), d.confidence)).collect();
        assert_eq!(
            summary,
            vec![("person", 0.9), ("car", 0.6), ("traffic light", 0.3)]
        );
    }

    #[test]
    fn broken_class_thresholds_are_explained() {
        assert!(
            DetectionFilter::parse_class_thresholds("person")
                .unwrap_err()
                .contains("label=threshold")
        );
        assert!(
            DetectionFilter::parse_class_thresholds("person=high")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            DetectionFilter::parse_class_thresholds("person=1.5")
                .unwrap_err()
                .contains("outside")
        );
        assert!(DetectionFilter::parse_class_thresholds("").unwrap().is_empty());
    }

    #[test]
    fn zero_limit_keeps_everything() {
        let filter = DetectionFilter {
            threshold: 0.0,
            max_detections: 0,
            ..Default::default()
        };
        assert_eq!(filter.apply(vec![detection("a", 0.1); 150]).len(), 150);
    }
}
