//! Image motion for the visual tracker, with OpenCV: small grey copies of frames, and boxes carried
//! from one grey frame to the next by median flow (Kalal et al., 2010): pyramidal Lucas–Kanade
//! optical flow on a grid of points inside each box, run forwards and backwards; points that do not
//! come back to where they started are dropped, and the box moves by the median displacement of
//! the rest and scales by the median change of their distances.

use opencv::core::{self, Mat, Point2f, Size, TermCriteria, Vector};
use opencv::prelude::*;
use opencv::{imgproc, video};

use crate::detection::NormalizedBox;

/// How the pixels of a frame are laid out, as far as making a grey image goes. Any fixed mix of
/// colour channels is a consistent grey image from frame to frame, which is all motion needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelLayout {
    /// One byte a pixel: a luma plane (planar and semi-planar YUV) or GRAY8.
    Luma,
    /// Three bytes a pixel (RGB, BGR).
    Packed3,
    /// Four bytes a pixel (RGBA, BGRx, ARGB, ...).
    Packed4,
    /// YUY2 (luma first in each two-byte pair).
    Yuy2,
    /// UYVY (luma second).
    Uyvy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlowError(pub String);

impl std::fmt::Display for FlowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlowError {}

impl From<opencv::Error> for FlowError {
    fn from(e: opencv::Error) -> Self {
        FlowError(format!("OpenCV: {e}"))
    }
}

/// A frame as the tracker sees it: grey, at most `max_side` pixels on its longer side.
pub struct GreyImage {
    image: Mat,
    /// Its image pyramid with derivatives, made once when it is first followed from or into
    /// (optical flow would make it again on every call) and dropped when it is no longer needed.
    pyramid: std::cell::OnceCell<Vector<Mat>>,
}

impl GreyImage {
    /// A grey copy of a frame whose rows of `width` pixels in `layout` start every `stride` bytes
    /// of `data`, scaled down (by area averaging) so that its longer side is at most `max_side`.
    pub fn from_pixels(
        data: &[u8],
        width: u32,
        height: u32,
        stride: usize,
        layout: PixelLayout,
        max_side: u32,
    ) -> Result<GreyImage, FlowError> {
        let (mat_type, bytes_per_pixel) = match layout {
            PixelLayout::Luma => (core::CV_8UC1, 1),
            PixelLayout::Packed3 => (core::CV_8UC3, 3),
            PixelLayout::Packed4 => (core::CV_8UC4, 4),
            PixelLayout::Yuy2 | PixelLayout::Uyvy => (core::CV_8UC2, 2),
        };
        let (w, h) = (width as usize, height as usize);
        if w == 0
            || h == 0
            || stride < w * bytes_per_pixel
            || data.len() < stride * (h - 1) + w * bytes_per_pixel
        {
            return Err(FlowError(format!(
                "a {width}x{height} frame does not fit in {} bytes with rows of {stride}",
                data.len()
            )));
        }
        // SAFETY: the bounds were checked above; OpenCV only reads through this header, which is
        // dropped before `data`'s borrow ends.
        let frame = unsafe {
            Mat::new_rows_cols_with_data_unsafe(
                height as i32,
                width as i32,
                mat_type,
                data.as_ptr() as *mut std::ffi::c_void,
                stride,
            )?
        };
        let scale = (max_side as f64 / width.max(height) as f64).min(1.0);
        let size = Size::new(
            ((width as f64 * scale).round() as i32).max(1),
            ((height as f64 * scale).round() as i32).max(1),
        );
        let grey = match layout {
            PixelLayout::Luma => frame,
            PixelLayout::Packed3 => convert(&frame, imgproc::COLOR_RGB2GRAY)?,
            PixelLayout::Packed4 => convert(&frame, imgproc::COLOR_RGBA2GRAY)?,
            PixelLayout::Yuy2 => convert(&frame, imgproc::COLOR_YUV2GRAY_YUY2)?,
            PixelLayout::Uyvy => convert(&frame, imgproc::COLOR_YUV2GRAY_UYVY)?,
        };
        let mut image = Mat::default();
        if size.width as u32 == width && size.height as u32 == height {
            grey.copy_to(&mut image)?;
        } else {
            imgproc::resize(&grey, &mut image, size, 0.0, 0.0, imgproc::INTER_AREA)?;
        }
        Ok(GreyImage {
            image,
            pyramid: std::cell::OnceCell::new(),
        })
    }

    fn pyramid(&self, settings: &FlowSettings) -> Result<&Vector<Mat>, FlowError> {
        if let Some(pyramid) = self.pyramid.get() {
            return Ok(pyramid);
        }
        let mut pyramid = Vector::<Mat>::new();
        video::build_optical_flow_pyramid(
            &self.image,
            &mut pyramid,
            Size::new(settings.window, settings.window),
            settings.levels,
            true,
            core::BORDER_REFLECT_101,
            core::BORDER_CONSTANT,
            true,
        )?;
        Ok(self.pyramid.get_or_init(|| pyramid))
    }

    /// Frees the pyramid (frames kept only for carrying late results forward).
    pub fn forget_pyramid(&mut self) {
        self.pyramid.take();
    }

    /// A grey image from its pixels, row after row (tests, benchmarks).
    pub fn from_grey(width: u32, height: u32, pixels: &[u8]) -> Result<GreyImage, FlowError> {
        Self::from_pixels(
            pixels,
            width,
            height,
            width as usize,
            PixelLayout::Luma,
            width.max(height),
        )
    }

    pub fn width(&self) -> u32 {
        self.image.cols() as u32
    }

    pub fn height(&self) -> u32 {
        self.image.rows() as u32
    }

    /// The share of pixels in each of 16 brightness bins, to tell a cut from motion.
    pub fn histogram(&self) -> [f32; 16] {
        let mut bins = [0u32; 16];
        let mut total = 0u32;
        if let Ok(bytes) = self.image.data_bytes() {
            for &value in bytes {
                bins[(value >> 4) as usize] += 1;
                total += 1;
            }
        }
        bins.map(|count| count as f32 / total.max(1) as f32)
    }
}

fn convert(frame: &Mat, code: i32) -> Result<Mat, FlowError> {
    let mut grey = Mat::default();
    imgproc::cvt_color(frame, &mut grey, code, 0)?;
    Ok(grey)
}

/// How boxes are followed.
#[derive(Debug, Clone, Copy)]
pub struct FlowSettings {
    /// Points per box side (fewer for small boxes).
    pub grid: usize,
    /// Lucas–Kanade window side, in pixels of the grey image.
    pub window: i32,
    /// Pyramid levels above the grey image.
    pub levels: i32,
    /// A point whose backward track misses its start by more than this (pixels) is dropped.
    pub max_round_trip_error: f32,
    /// Boxes narrower or lower than this many grey pixels are not followed (too little texture).
    pub min_box_side: f32,
}

impl Default for FlowSettings {
    fn default() -> Self {
        FlowSettings {
            grid: 6,
            window: 11,
            levels: 3,
            max_round_trip_error: 1.0,
            min_box_side: 8.0,
        }
    }
}

/// Each box (normalised) of `from` where it is in `to`; `None` where its points could not be
/// followed (too small, no texture, hidden, gone).
pub fn carry(
    from: &GreyImage,
    to: &GreyImage,
    boxes: &[NormalizedBox],
    settings: &FlowSettings,
) -> Result<Vec<Option<NormalizedBox>>, FlowError> {
    let (width, height) = (from.width() as f32, from.height() as f32);
    if to.width() != from.width() || to.height() != from.height() {
        return Ok(vec![None; boxes.len()]);
    }
    // The grid of each box that is big enough, all in one list for one optical-flow call.
    let mut points = Vector::<Point2f>::new();
    let mut ranges = Vec::with_capacity(boxes.len());
    for bbox in boxes {
        let (x0, y0) = (bbox.x_min * width, bbox.y_min * height);
        let (w, h) = (
            (bbox.x_max - bbox.x_min) * width,
            (bbox.y_max - bbox.y_min) * height,
        );
        let start = points.len();
        if w >= settings.min_box_side && h >= settings.min_box_side {
            let side = settings.grid.min((w.min(h) / 4.0) as usize).max(3);
            for row in 0..side {
                for column in 0..side {
                    // The inner 80 % of the box: its edges are often background.
                    let fx = 0.1 + 0.8 * (column as f32 + 0.5) / side as f32;
                    let fy = 0.1 + 0.8 * (row as f32 + 0.5) / side as f32;
                    points.push(Point2f::new(x0 + fx * w, y0 + fy * h));
                }
            }
        }
        ranges.push(start..points.len());
    }
    if points.is_empty() {
        return Ok(vec![None; boxes.len()]);
    }
    let forward = track_points(from, to, &points, settings)?;
    let back = track_points(to, from, &forward.0, settings)?;

    Ok(boxes
        .iter()
        .zip(ranges)
        .map(|(bbox, range)| {
            let mut kept = Vec::new();
            let mut errors = Vec::new();
            for i in range {
                let (Ok(start), Ok(end), Ok(returned)) = (points.get(i), forward.0.get(i), back.0.get(i))
                else {
                    continue;
                };
                if !(forward.1[i] && back.1[i]) {
                    continue;
                }
                let error = ((returned.x - start.x).powi(2) + (returned.y - start.y).powi(2)).sqrt();
                if error.is_finite() && error <= settings.max_round_trip_error {
                    kept.push((start, end));
                    errors.push(error);
                }
            }
            // The better half by round-trip error, as median flow keeps.
            if kept.len() >= 8 {
                let limit = median(&mut errors.clone());
                let mut index = 0;
                kept.retain(|_| {
                    let keep = errors[index] <= limit;
                    index += 1;
                    keep
                });
            }
            if kept.len() < 4 {
                return None;
            }
            moved(bbox, &kept, width, height)
        })
        .collect())
}

/// `points` of `from` followed into `to`, and whether each was found.
fn track_points(
    from: &GreyImage,
    to: &GreyImage,
    points: &Vector<Point2f>,
    settings: &FlowSettings,
) -> Result<(Vector<Point2f>, Vec<bool>), FlowError> {
    let mut found = Vector::<Point2f>::new();
    let mut status = Vector::<u8>::new();
    let mut error = Vector::<f32>::new();
    video::calc_optical_flow_pyr_lk(
        from.pyramid(settings)?,
        to.pyramid(settings)?,
        points,
        &mut found,
        &mut status,
        &mut error,
        Size::new(settings.window, settings.window),
        settings.levels,
        TermCriteria::new(core::TermCriteria_COUNT + core::TermCriteria_EPS, 10, 0.03)?,
        0,
        1e-4,
    )?;
    Ok((found, status.iter().map(|s| s != 0).collect()))
}

/// The box moved by the median displacement of its points and scaled by the median ratio of
/// their distances.
fn moved(
    bbox: &NormalizedBox,
    pairs: &[(Point2f, Point2f)],
    width: f32,
    height: f32,
) -> Option<NormalizedBox> {
    let mut dx: Vec<f32> = pairs.iter().map(|(a, b)| b.x - a.x).collect();
    let mut dy: Vec<f32> = pairs.iter().map(|(a, b)| b.y - a.y).collect();
    let (dx, dy) = (median(&mut dx), median(&mut dy));
    let mut ratios = Vec::new();
    for (i, (a0, a1)) in pairs.iter().enumerate() {
        for (b0, b1) in &pairs[i + 1..] {
            let before = ((a0.x - b0.x).powi(2) + (a0.y - b0.y).powi(2)).sqrt();
            if before > 2.0 {
                let after = ((a1.x - b1.x).powi(2) + (a1.y - b1.y).powi(2)).sqrt();
                ratios.push(after / before);
            }
        }
    }
    let scale = if ratios.is_empty() {
        1.0
    } else {
        median(&mut ratios).clamp(0.8, 1.25)
    };
    let (cx, cy) = (
        (bbox.x_min + bbox.x_max) / 2.0 + dx / width,
        (bbox.y_min + bbox.y_max) / 2.0 + dy / height,
    );
    let (w, h) = (
        (bbox.x_max - bbox.x_min) * scale,
        (bbox.y_max - bbox.y_min) * scale,
    );
    let carried = NormalizedBox {
        x_min: cx - w / 2.0,
        y_min: cy - h / 2.0,
        x_max: cx + w / 2.0,
        y_max: cy + h / 2.0,
    };
    // A box that left the picture is gone.
    (carried.x_max > 0.0 && carried.y_max > 0.0 && carried.x_min < 1.0 && carried.y_min < 1.0)
        .then_some(carried)
}

fn median(values: &mut [f32]) -> f32 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
