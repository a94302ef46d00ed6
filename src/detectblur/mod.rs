//! `detectblur`: pixelates the objects of chosen classes (faces by default) on raw video, in
//! place, so recordings can be shared. Reads any `GstVideoRegionOfInterestMeta`.
//!
//! ```text
//! gst-launch-1.0 v4l2src ! videoconvert ! asyncdetect ! detectblur classes=person ! videoconvert ! autovideosink
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct DetectBlur(ObjectSubclass<imp::DetectBlur>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// The shape masked inside each box.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstDetectBlurShape")]
pub enum DetectBlurShape {
    /// The whole box.
    #[default]
    #[enum_value(name = "Rectangle: the whole box", nick = "rectangle")]
    Rectangle,
    /// The ellipse inscribed in the box (faces).
    #[enum_value(name = "Ellipse: the ellipse inscribed in the box", nick = "ellipse")]
    Ellipse,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    DetectBlurShape::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "detectblur",
        gst::Rank::NONE,
        DetectBlur::static_type(),
    )
}
