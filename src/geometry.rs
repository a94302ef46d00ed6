//! Where a frame lands in the model's input (stretched or letterboxed, whole or cropped to a
//! region of interest) and how boxes found there map back to the frame. No GStreamer types.

use std::fmt;

use crate::detection::NormalizedBox;

/// How a frame is fitted into the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Scaled to the input's size, ignoring aspect (what SSD and BlazeFace are trained with).
    Stretch,
    /// Scaled to fit keeping its aspect, centred, the rest grey (what YOLO is trained with).
    Letterbox,
}

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The part of the picture inference looks at: a rectangle, or a polygon (inference runs on its
/// bounding rectangle and keeps objects whose centre lies inside). Points are fractions of the
/// frame (0..1), so one region fits every resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub bounds: NormalizedBox,
    /// Vertices when the region is a polygon.
    pub polygon: Option<Vec<(f32, f32)>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegionError(pub String);

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Region {
    /// Parses `x,y,width,height` (a rectangle) or `x1,y1 x2,y2 x3,y3 ...` (a polygon of at least
    /// three points), all fractions of the frame from 0 to 1. An empty string is no region.
    pub fn parse(text: &str) -> Result<Option<Region>, RegionError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let number = |s: &str| -> Result<f32, RegionError> {
            let value: f32 = s
                .trim()
                .parse()
                .map_err(|_| RegionError(format!("`{s}` is not a number")))?;
            if !(0.0..=1.0).contains(&value) {
                return Err(RegionError(format!(
                    "{value} is outside 0..1 (coordinates are fractions of the frame)"
                )));
            }
            Ok(value)
        };
        let groups: Vec<&str> = text.split_whitespace().collect();
        if groups.len() == 1 {
            let values = groups[0]
                .split(',')
                .map(number)
                .collect::<Result<Vec<f32>, _>>()?;
            let [x, y, width, height] = values[..] else {
                return Err(RegionError(format!(
                    "`{text}`: expected `x,y,width,height` or at least three `x,y` points"
                )));
            };
            if width <= 0.0 || height <= 0.0 || x + width > 1.0 + 1e-6 || y + height > 1.0 + 1e-6 {
                return Err(RegionError(format!(
                    "`{text}`: the rectangle must have a size and lie inside the frame"
                )));
            }
            return Ok(Some(Region {
                bounds: NormalizedBox {
                    x_min: x,
                    y_min: y,
                    x_max: (x + width).min(1.0),
                    y_max: (y + height).min(1.0),
                },
                polygon: None,
            }));
        }
        let points = groups
            .iter()
            .map(|group| {
                let values = group.split(',').map(number).collect::<Result<Vec<f32>, _>>()?;
                match values[..] {
                    [x, y] => Ok((x, y)),
                    _ => Err(RegionError(format!("`{group}` is not an `x,y` point"))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if points.len() < 3 {
            return Err(RegionError(format!(
                "`{text}`: a polygon needs at least three points"
            )));
        }
        let bounds = points.iter().fold(
            NormalizedBox {
                x_min: 1.0,
                y_min: 1.0,
                x_max: 0.0,
                y_max: 0.0,
            },
            |b, &(x, y)| NormalizedBox {
                x_min: b.x_min.min(x),
                y_min: b.y_min.min(y),
                x_max: b.x_max.max(x),
                y_max: b.y_max.max(y),
            },
        );
        if bounds.x_max <= bounds.x_min || bounds.y_max <= bounds.y_min {
            return Err(RegionError(format!("`{text}`: the polygon has no area")));
        }
        Ok(Some(Region {
            bounds,
            polygon: Some(points),
        }))
    }

    /// Whether an object with this box belongs to the region (its centre lies inside).
    pub fn contains(&self, bbox: &NormalizedBox) -> bool {
        let (x, y) = ((bbox.x_min + bbox.x_max) / 2.0, (bbox.y_min + bbox.y_max) / 2.0);
        match &self.polygon {
            None => {
                let b = &self.bounds;
                (b.x_min..=b.x_max).contains(&x) && (b.y_min..=b.y_max).contains(&y)
            }
            Some(points) => point_in_polygon(x, y, points),
        }
    }
}

/// Even-odd rule: a ray from the point crosses the outline an odd number of times when inside.
fn point_in_polygon(x: f32, y: f32, points: &[(f32, f32)]) -> bool {
    let mut inside = false;
    let mut previous = points[points.len() - 1];
    for &current in points {
        let ((x1, y1), (x2, y2)) = (previous, current);
        if (y1 > y) != (y2 > y) && x < (x2 - x1) * (y - y1) / (y2 - y1) + x1 {
            inside = !inside;
        }
        previous = current;
    }
    inside
}

/// Where the frame's pixels go in the model input, and the way back for boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The part of the frame that is read (all of it without a region).
    pub source: PixelRect,
    /// Where it is drawn in the model input; the rest is filled grey when letterboxing.
    pub destination: PixelRect,
    pub input_width: u32,
    pub input_height: u32,
    pub frame_width: u32,
    pub frame_height: u32,
}

impl Placement {
    pub fn new(
        frame_width: u32,
        frame_height: u32,
        region: Option<&NormalizedBox>,
        input_width: u32,
        input_height: u32,
        fit: Fit,
    ) -> Placement {
        let (fw, fh) = (frame_width.max(1), frame_height.max(1));
        let source = match region {
            None => PixelRect {
                x: 0,
                y: 0,
                width: fw,
                height: fh,
            },
            Some(r) => {
                let x0 = ((r.x_min * fw as f32).floor() as u32).min(fw - 1);
                let y0 = ((r.y_min * fh as f32).floor() as u32).min(fh - 1);
                let x1 = ((r.x_max * fw as f32).ceil() as u32).clamp(x0 + 1, fw);
                let y1 = ((r.y_max * fh as f32).ceil() as u32).clamp(y0 + 1, fh);
                PixelRect {
                    x: x0,
                    y: y0,
                    width: x1 - x0,
                    height: y1 - y0,
                }
            }
        };
        let (iw, ih) = (input_width.max(1), input_height.max(1));
        let destination = match fit {
            Fit::Stretch => PixelRect {
                x: 0,
                y: 0,
                width: iw,
                height: ih,
            },
            Fit::Letterbox => {
                let scale = (iw as f64 / source.width as f64).min(ih as f64 / source.height as f64);
                let width = ((source.width as f64 * scale).round() as u32).clamp(1, iw);
                let height = ((source.height as f64 * scale).round() as u32).clamp(1, ih);
                PixelRect {
                    x: (iw - width) / 2,
                    y: (ih - height) / 2,
                    width,
                    height,
                }
            }
        };
        Placement {
            source,
            destination,
            input_width: iw,
            input_height: ih,
            frame_width: fw,
            frame_height: fh,
        }
    }

    /// Whether the picture covers the whole input (no grey border to fill).
    pub fn fills_input(&self) -> bool {
        self.destination.width == self.input_width && self.destination.height == self.input_height
    }

    /// A box in fractions of the model input mapped to fractions of the frame.
    pub fn to_frame(&self, bbox: &NormalizedBox) -> NormalizedBox {
        let (d, s) = (&self.destination, &self.source);
        // Input fraction -> input pixels -> fraction of the picture drawn there -> frame pixels.
        let x = |v: f32| {
            let in_picture = (v * self.input_width as f32 - d.x as f32) / d.width as f32;
            (s.x as f32 + in_picture * s.width as f32) / self.frame_width as f32
        };
        let y = |v: f32| {
            let in_picture = (v * self.input_height as f32 - d.y as f32) / d.height as f32;
            (s.y as f32 + in_picture * s.height as f32) / self.frame_height as f32
        };
        NormalizedBox {
            x_min: x(bbox.x_min),
            y_min: y(bbox.y_min),
            x_max: x(bbox.x_max),
            y_max: y(bbox.y_max),
        }
        .clamped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &NormalizedBox, b: &NormalizedBox) -> bool {
        [
            (a.x_min, b.x_min),
            (a.y_min, b.y_min),
            (a.x_max, b.x_max),
            (a.y_max, b.y_max),
        ]
        .iter()
        .all(|(x, y)| (x - y).abs() < 1e-3)
    }

    const WHOLE: NormalizedBox = NormalizedBox {
        x_min: 0.0,
        y_min: 0.0,
        x_max: 1.0,
        y_max: 1.0,
    };

    #[test]
    fn stretch_maps_boxes_unchanged() {
        let p = Placement::new(1920, 1080, None, 300, 300, Fit::Stretch);
        assert!(p.fills_input());
        let b = NormalizedBox {
            x_min: 0.1,
            y_min: 0.2,
            x_max: 0.5,
            y_max: 0.9,
        };
        assert!(close(&p.to_frame(&b), &b));
    }

    #[test]
    fn letterbox_centres_a_wide_frame_and_maps_back() {
        let p = Placement::new(1920, 1080, None, 640, 640, Fit::Letterbox);
        assert_eq!(
            p.destination,
            PixelRect {
                x: 0,
                y: 140,
                width: 640,
                height: 360
            }
        );
        assert!(!p.fills_input());
        // The picture's own area in the input maps to the whole frame.
        let picture = NormalizedBox {
            x_min: 0.0,
            y_min: 140.0 / 640.0,
            x_max: 1.0,
            y_max: 500.0 / 640.0,
        };
        assert!(close(&p.to_frame(&picture), &WHOLE));
        // A box in the grey border is clamped onto the frame's edge.
        let border = NormalizedBox {
            x_min: 0.4,
            y_min: 0.0,
            x_max: 0.6,
            y_max: 0.1,
        };
        let mapped = p.to_frame(&border);
        assert_eq!((mapped.y_min, mapped.y_max), (0.0, 0.0));
    }

    #[test]
    fn a_crop_maps_back_into_its_part_of_the_frame() {
        let region = Region::parse("0.5,0.25,0.5,0.5").unwrap().unwrap();
        let p = Placement::new(1000, 800, Some(&region.bounds), 300, 300, Fit::Stretch);
        assert_eq!(
            p.source,
            PixelRect {
                x: 500,
                y: 200,
                width: 500,
                height: 400
            }
        );
        let mapped = p.to_frame(&WHOLE);
        assert!(close(&mapped, &region.bounds));
        // Letterboxed crop: 500x400 into 300x300 is 300x240 with 30 px bands.
        let p = Placement::new(1000, 800, Some(&region.bounds), 300, 300, Fit::Letterbox);
        assert_eq!(p.destination.height, 240);
        assert_eq!(p.destination.y, 30);
    }

    #[test]
    fn regions_parse_and_reject_clearly() {
        assert_eq!(Region::parse("  ").unwrap(), None);
        let polygon = Region::parse("0,0 1,0 0,1").unwrap().unwrap();
        assert_eq!(polygon.bounds, WHOLE);
        let inside = NormalizedBox {
            x_min: 0.1,
            y_min: 0.1,
            x_max: 0.2,
            y_max: 0.2,
        };
        let outside = NormalizedBox {
            x_min: 0.8,
            y_min: 0.8,
            x_max: 0.9,
            y_max: 0.9,
        };
        assert!(polygon.contains(&inside));
        assert!(!polygon.contains(&outside));
        for bad in [
            "0.5,0.5",
            "0,0,2,1",
            "a,b,c,d",
            "0.6,0,0.6,1",
            "0,0 1,1",
            "0,0 1,1 0.5,0.5,1",
        ] {
            assert!(Region::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
