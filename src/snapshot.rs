//! Event snapshots: a picture of the frame, or of the object with some room around it, with the
//! object's box and label drawn, encoded as JPEG. No GStreamer types: the element hands over the
//! frame already converted to packed RGB.

use crate::draw::{
    Annotation, Canvas, ColorModel, Component, Rect, TextRenderer, class_color, draw_annotations,
};

/// Packed 8-bit RGB, rows `width * 3` bytes apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// The room left around an object in a cropped snapshot, as a share of the box's size.
const CROP_MARGIN: f64 = 0.25;
/// Cropped snapshots are at least this many pixels on each side (where the frame allows).
const MIN_CROP_SIDE: u32 = 96;

impl Picture {
    /// The part of the picture around `bbox` (normalised corners), with a margin; the box's corners
    /// within the crop come back normalised to the crop.
    pub fn crop_around(&self, bbox: [f64; 4]) -> (Picture, [f64; 4]) {
        let (w, h) = (self.width as f64, self.height as f64);
        let [x0, y0, x1, y1] = bbox.map(|v| v.clamp(0.0, 1.0));
        let (bw, bh) = ((x1 - x0) * w, (y1 - y0) * h);
        let side_w = (bw * (1.0 + 2.0 * CROP_MARGIN)).max(MIN_CROP_SIDE as f64).min(w);
        let side_h = (bh * (1.0 + 2.0 * CROP_MARGIN)).max(MIN_CROP_SIDE as f64).min(h);
        let centre = ((x0 + x1) / 2.0 * w, (y0 + y1) / 2.0 * h);
        let left = (centre.0 - side_w / 2.0).clamp(0.0, w - side_w).floor() as u32;
        let top = (centre.1 - side_h / 2.0).clamp(0.0, h - side_h).floor() as u32;
        let crop_w = (side_w.ceil() as u32).min(self.width - left).max(1);
        let crop_h = (side_h.ceil() as u32).min(self.height - top).max(1);
        let mut rgb = Vec::with_capacity((crop_w * crop_h * 3) as usize);
        for row in top..top + crop_h {
            let start = ((row * self.width + left) * 3) as usize;
            rgb.extend_from_slice(&self.rgb[start..start + (crop_w * 3) as usize]);
        }
        let to_crop =
            |value: f64, origin: u32, size: f64, crop: u32| (value * size - origin as f64) / crop as f64;
        let corners = [
            to_crop(x0, left, w, crop_w),
            to_crop(y0, top, h, crop_h),
            to_crop(x1, left, w, crop_w),
            to_crop(y1, top, h, crop_h),
        ];
        (
            Picture {
                width: crop_w,
                height: crop_h,
                rgb,
            },
            corners,
        )
    }

    /// Draws a box (normalised corners) with a label tab, as detectoverlay would.
    pub fn draw_box(&mut self, bbox: [f64; 4], label: &str, text: &mut TextRenderer) {
        let (w, h) = (self.width as f64, self.height as f64);
        let rect = Rect {
            x: (bbox[0] * w).round() as i64,
            y: (bbox[1] * h).round() as i64,
            w: ((bbox[2] - bbox[0]) * w).round() as i64,
            h: ((bbox[3] - bbox[1]) * h).round() as i64,
        };
        let scale = self.width.max(self.height);
        let line_width = (scale / 320).max(2);
        let font_size = (scale / 40).clamp(12, 32);
        let annotation = Annotation {
            rect,
            color: class_color(label),
            label: label.to_string(),
            stale: false,
        };
        let component = |offset| Component {
            plane: 0,
            offset,
            pixel_stride: 3,
            w_sub: 0,
            h_sub: 0,
        };
        let mut canvas = Canvas {
            planes: vec![&mut self.rgb[..]],
            strides: vec![self.width as usize * 3],
            components: vec![component(0), component(1), component(2)],
            alpha: None,
            model: ColorModel::Rgb,
            width: self.width,
            height: self.height,
        };
        draw_annotations(&mut canvas, text, &[annotation], line_width, font_size);
    }

    /// The picture as a baseline JPEG.
    pub fn jpeg(&self, quality: u8) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let width = u16::try_from(self.width).map_err(|_| "picture too wide for JPEG".to_string())?;
        let height = u16::try_from(self.height).map_err(|_| "picture too tall for JPEG".to_string())?;
        jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
            .encode(&self.rgb, width, height, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| format!("JPEG encoding failed: {e}"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> Picture {
        let mut rgb = Vec::new();
        for y in 0..height {
            for x in 0..width {
                rgb.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, 7]);
            }
        }
        Picture { width, height, rgb }
    }

    #[test]
    fn a_crop_holds_the_object_with_room_around_it() {
        let picture = gradient(400, 300);
        let (crop, corners) = picture.crop_around([0.5, 0.5, 0.75, 0.9]);
        // 100x120 box plus a quarter each side: 150x180.
        assert_eq!((crop.width, crop.height), (150, 180));
        // The crop's first pixel is the frame's pixel at its origin (x 175, y 120).
        assert_eq!(&crop.rgb[..3], &[175, 120, 7]);
        let [x0, y0, x1, y1] = corners;
        assert!((x0 * 150.0 - 25.0).abs() < 1.0 && (x1 * 150.0 - 125.0).abs() < 1.0);
        assert!((y0 * 180.0 - 30.0).abs() < 1.0 && (y1 * 180.0 - 150.0).abs() < 1.0);
    }

    #[test]
    fn crops_stay_inside_the_frame_and_keep_a_minimum_size() {
        let picture = gradient(200, 100);
        let (edge, _) = picture.crop_around([0.95, 0.9, 1.0, 1.0]);
        assert_eq!((edge.width, edge.height), (96, 96));
        assert_eq!(&edge.rgb[..2], &[104, 4]);
        let (whole, corners) = picture.crop_around([0.0, 0.0, 1.0, 1.0]);
        assert_eq!((whole.width, whole.height), (200, 100));
        assert_eq!(corners, [0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn the_box_is_drawn_in_its_class_colour_and_the_jpeg_decodes_to_its_size() {
        let mut picture = gradient(320, 240);
        let mut text = TextRenderer::new();
        picture.draw_box([0.25, 0.25, 0.75, 0.75], "person", &mut text);
        let colour = class_color("person");
        let at = |x: u32, y: u32| {
            let i = ((y * 320 + x) * 3) as usize;
            [picture.rgb[i], picture.rgb[i + 1], picture.rgb[i + 2]]
        };
        assert_eq!(at(80, 150), [colour.r, colour.g, colour.b], "left edge");
        assert_eq!(at(160, 120), [160, 120, 7], "inside untouched");
        let jpeg = picture.jpeg(80).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        // The frame header (SOF0) carries height then width.
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        assert_eq!(u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]), 240);
        assert_eq!(u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]), 320);
    }
}
