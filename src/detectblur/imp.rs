//! The `detectblur` element: a BaseTransform pixelating boxes in place.

use std::collections::HashSet;
use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use super::DetectBlurShape;
use crate::detection::DetectionFilter;
use crate::draw::Rect;
use crate::lock;

static CAT: Lazy<gst::DebugCategory> = Lazy::new(|| {
    gst::DebugCategory::new(
        "detectblur",
        gst::DebugColorFlags::empty(),
        Some("Masks detected objects"),
    )
});

const DEFAULT_CLASSES: &str = "face";
const DEFAULT_BLOCK_SIZE: u32 = 0;

#[derive(Debug, Clone)]
struct Settings {
    classes_text: String,
    classes: HashSet<String>,
    block_size: u32,
    shape: DetectBlurShape,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            classes_text: DEFAULT_CLASSES.into(),
            classes: DetectionFilter::parse_classes(DEFAULT_CLASSES),
            block_size: DEFAULT_BLOCK_SIZE,
            shape: DetectBlurShape::Rectangle,
        }
    }
}

#[derive(Default)]
pub struct DetectBlur {
    settings: Mutex<Settings>,
    info: Mutex<Option<gst_video::VideoInfo>>,
}

/// The boxes to mask: those whose label (the `detection` label, else the ROI type) is chosen.
fn boxes(buffer: &gst::BufferRef, classes: &HashSet<String>) -> Vec<Rect> {
    crate::pads::read_regions(buffer)
        .into_iter()
        .filter(|region| classes.is_empty() || classes.contains(&region.label().to_lowercase()))
        .map(|region| Rect::from_pixels(region.rect))
        .collect()
}

#[glib::object_subclass]
impl ObjectSubclass for DetectBlur {
    const NAME: &'static str = "GstDetectBlur";
    type Type = super::DetectBlur;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for DetectBlur {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            vec![
                glib::ParamSpecString::builder("classes")
                    .nick("Classes")
                    .blurb(
                        "Comma-separated labels whose boxes are masked (case-insensitive). Empty: every box.",
                    )
                    .default_value(Some(DEFAULT_CLASSES))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("block-size")
                    .nick("Block size")
                    .blurb(
                        "Pixelation cell in pixels: larger hides more (0: a sixth of the box's shorter \
                         side, at least 4).",
                    )
                    .maximum(1024)
                    .default_value(DEFAULT_BLOCK_SIZE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default::<DetectBlurShape>(
                    "shape",
                    DetectBlurShape::Rectangle,
                )
                .nick("Shape")
                .blurb("Mask the whole box, or the ellipse inscribed in it.")
                .mutable_playing()
                .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        match pspec.name() {
            "classes" => {
                let text = value.get::<Option<String>>().ok().flatten().unwrap_or_default();
                settings.classes = DetectionFilter::parse_classes(&text);
                settings.classes_text = text;
            }
            "block-size" => settings.block_size = value.get().unwrap_or(DEFAULT_BLOCK_SIZE),
            "shape" => settings.shape = value.get().unwrap_or_default(),
            other => gst::warning!(CAT, imp = self, "Unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "classes" => settings.classes_text.to_value(),
            "block-size" => settings.block_size.to_value(),
            "shape" => settings.shape.to_value(),
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for DetectBlur {}

impl ElementImpl for DetectBlur {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Detection privacy mask",
                "Filter/Effect/Video",
                "Pixelates, in place, the GstVideoRegionOfInterestMeta boxes of chosen classes (faces \
                 by default) so recordings can be shared",
                "asyncdetect developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(crate::pads::raw_video_templates);
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for DetectBlur {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "Unsupported caps {incaps:?}"))?;
        *lock(&self.info) = Some(info);
        Ok(())
    }

    fn transform_ip(&self, buffer: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let boxes = boxes(buffer, &settings.classes);
        // Frames with nothing to mask are never mapped.
        if boxes.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let Some(info) = lock(&self.info).clone() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &info).map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ["Buffer does not hold a {:?} frame", info.format()]
            );
            gst::FlowError::Error
        })?;
        let mut canvas = crate::pads::canvas(&mut frame);
        for rect in &boxes {
            let block = match settings.block_size {
                0 => (rect.w.min(rect.h) as u32 / 6).max(4),
                size => size,
            };
            canvas.pixelate(*rect, block, settings.shape == DetectBlurShape::Ellipse);
        }
        gst::log!(CAT, imp = self, "Masked {} boxes", boxes.len());
        Ok(gst::FlowSuccess::Ok)
    }
}
