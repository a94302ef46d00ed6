//! What the plugin's in-place video elements share: the raw formats they accept, their pad
//! templates, a mapped frame described for the drawing code, and the ROI metas read back.

use gst_video::prelude::*;

use crate::draw::{Canvas, ColorModel, Component};
use crate::export::Region;

/// 8-bit raw formats that GStreamer's video converter reads (asyncdetect) and whose components
/// GStreamer describes for drawing (detectoverlay).
pub const RAW_FORMATS: &[gst_video::VideoFormat] = &[
    gst_video::VideoFormat::I420,
    gst_video::VideoFormat::Yv12,
    gst_video::VideoFormat::Nv12,
    gst_video::VideoFormat::Nv21,
    gst_video::VideoFormat::Y42b,
    gst_video::VideoFormat::Y444,
    gst_video::VideoFormat::Yuy2,
    gst_video::VideoFormat::Uyvy,
    gst_video::VideoFormat::Rgb,
    gst_video::VideoFormat::Bgr,
    gst_video::VideoFormat::Rgba,
    gst_video::VideoFormat::Bgra,
    gst_video::VideoFormat::Argb,
    gst_video::VideoFormat::Abgr,
    gst_video::VideoFormat::Rgbx,
    gst_video::VideoFormat::Bgrx,
    gst_video::VideoFormat::Xrgb,
    gst_video::VideoFormat::Xbgr,
    gst_video::VideoFormat::Gray8,
];

/// Always-present `src` and `sink` templates with the same caps.
pub fn same_caps_templates(caps: &gst::Caps) -> Vec<gst::PadTemplate> {
    [("src", gst::PadDirection::Src), ("sink", gst::PadDirection::Sink)]
        .into_iter()
        .map(|(name, direction)| {
            gst::PadTemplate::new(name, direction, gst::PadPresence::Always, caps)
                .expect("valid pad template")
        })
        .collect()
}

/// The templates of an element that takes [`RAW_FORMATS`] in system memory.
pub fn raw_video_templates() -> Vec<gst::PadTemplate> {
    same_caps_templates(
        &gst_video::VideoCapsBuilder::new()
            .format_list(RAW_FORMATS.iter().copied())
            .build(),
    )
}

/// Describes the frame's planes for the drawing code.
pub fn canvas<'a>(frame: &'a mut gst_video::VideoFrameRef<&mut gst::BufferRef>) -> Canvas<'a> {
    let info = frame.info().clone();
    let format = info.format_info();
    let component = |c: usize| Component {
        plane: format.plane()[c] as usize,
        offset: format.poffset()[c] as usize,
        pixel_stride: format.pixel_stride()[c] as usize,
        w_sub: format.w_sub()[c],
        h_sub: format.h_sub()[c],
    };
    let colour_components = if format.is_gray() { 1 } else { 3 };
    let model = if !format.is_yuv() && !format.is_gray() {
        ColorModel::Rgb
    } else if info.colorimetry().matrix() == gst_video::VideoColorMatrix::Bt709 {
        ColorModel::YuvBt709
    } else {
        ColorModel::YuvBt601
    };
    let strides = info.stride().iter().map(|&s| s as usize).collect();
    Canvas {
        components: (0..colour_components).map(component).collect(),
        alpha: format.has_alpha().then(|| component(3)),
        model,
        width: info.width(),
        height: info.height(),
        strides,
        planes: frame.planes_data_mut().into_iter().collect(),
    }
}

/// Reads every ROI meta of a buffer, whoever made it.
pub fn read_regions(buffer: &gst::BufferRef) -> Vec<Region> {
    buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .map(|meta| {
            let detection = meta.param("detection");
            let field = |name: &str| detection.and_then(|d| d.get::<f64>(name).ok());
            let normalized = match (field("x_min"), field("y_min"), field("x_max"), field("y_max")) {
                (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
                _ => None,
            };
            Region {
                rect: meta.rect(),
                region_id: meta.id(),
                roi_type: meta.roi_type().to_string(),
                tracking_id: meta.param("object_id").and_then(|o| o.get::<i32>("id").ok()),
                label: detection.and_then(|d| d.get::<String>("label").ok()),
                label_id: detection.and_then(|d| d.get::<i32>("label_id").ok()),
                confidence: field("confidence"),
                normalized,
                age: detection.and_then(|d| d.get::<i64>("age").ok()),
            }
        })
        .collect()
}
