//! `detectoverlay`: draws every `GstVideoRegionOfInterestMeta` on the video, in place.
//!
//! A box in the class's own colour, a label tab with the label, the confidence and a tracking id
//! where one exists (`object_id` parameter), text in black or white to read on any background.
//! Results older than `stale-age` (the `age` field `asyncdetect` writes) are drawn dimmed and dashed.
//!
//! ```text
//! gst-launch-1.0 filesrc location=street.mp4 ! decodebin ! videoconvert ! asyncdetect ! detectoverlay ! \
//!   videoconvert ! openh264enc ! h264parse ! mp4mux ! filesink location=annotated.mp4
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;
mod scene;

glib::wrapper! {
    pub struct DetectOverlay(ObjectSubclass<imp::DetectOverlay>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "detectoverlay",
        gst::Rank::NONE,
        DetectOverlay::static_type(),
    )
}
