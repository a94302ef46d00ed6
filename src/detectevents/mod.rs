//! `detectevents`: turns the tracked objects on the buffers (`asyncdetect tracking=...`) into
//! surveillance events: named zones entered and left (with the time spent inside), named lines
//! crossed in or out, live counts per zone and class, and each object's start and end. Events go
//! on the bus as element messages and onto the buffers as a `DetectEventsMeta` custom meta, and
//! with `mqtt-broker` to an MQTT broker with JPEG snapshots (`outputs.rs`, `snapshots.rs`); the
//! video passes unchanged.
//!
//! ```text
//! gst-launch-1.0 -m rtspsrc location=rtsp://camera/stream ! decodebin ! videoconvert ! \
//!   asyncdetect tracking=visual ! \
//!   detectevents zones="driveway:0.1,0.5 0.6,0.5 0.6,1 0.1,1" lines="gate:0.2,0.7 0.8,0.7" ! fakesink
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;
mod outputs;
mod settings;
mod snapshots;

/// The name of the custom meta carrying a buffer's events and counts (`Gst.Buffer.get_custom_meta`).
pub const META_NAME: &str = "DetectEventsMeta";

glib::wrapper! {
    pub struct DetectEvents(ObjectSubclass<imp::DetectEvents>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Which point of a box stands for its object.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstDetectEventsAnchor")]
pub enum DetectEventsAnchor {
    /// Where a person or a car touches the ground.
    #[default]
    #[enum_value(name = "Bottom centre of the box", nick = "bottom-center")]
    BottomCenter,
    #[enum_value(name = "Centre of the box", nick = "center")]
    Center,
    #[enum_value(name = "Top centre of the box", nick = "top-center")]
    TopCenter,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    if !gst::meta::CustomMeta::is_registered(META_NAME) {
        gst::meta::CustomMeta::register(META_NAME, &[]);
    }
    DetectEventsAnchor::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "detectevents",
        gst::Rank::NONE,
        DetectEvents::static_type(),
    )
}
