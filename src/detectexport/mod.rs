//! `detectexport`: writes the detections on every buffer as JSON Lines, in DL Streamer's
//! `gvametaconvert` layout, from its own thread so a slow disk never holds up the video.
//!
//! ```text
//! gst-launch-1.0 uridecodebin uri=rtsp://camera/stream ! videoconvert ! asyncdetect ! \
//!   detectexport location=detections.jsonl source=gate ! fakesink
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct DetectExport(ObjectSubclass<imp::DetectExport>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "detectexport",
        gst::Rank::NONE,
        DetectExport::static_type(),
    )
}
