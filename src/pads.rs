//! What the plugin's in-place video elements share: the raw formats they accept and their pad
//! templates.

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
