//! The `detectoverlay` element: a BaseTransform drawing in place.

use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use super::scene::{ShapeCache, draw_scene, read_scene};
use crate::draw::{Annotation, Rect, TextRenderer, class_color, draw_annotations};
use crate::lock;

static CAT: Lazy<gst::DebugCategory> = Lazy::new(|| {
    gst::DebugCategory::new(
        "detectoverlay",
        gst::DebugColorFlags::empty(),
        Some("Draws detected objects on video"),
    )
});

const DEFAULT_LINE_WIDTH: u32 = 0;
const DEFAULT_FONT_SIZE: u32 = 0;
const DEFAULT_SHOW_LABEL: bool = true;
const DEFAULT_SHOW_CONFIDENCE: bool = true;
const DEFAULT_SHOW_ID: bool = true;
const DEFAULT_STALE_AGE: u64 = 500_000_000;
const DEFAULT_SHOW_EVENTS: bool = true;

#[derive(Debug, Clone)]
struct Settings {
    line_width: u32,
    font_size: u32,
    show_label: bool,
    show_confidence: bool,
    show_id: bool,
    stale_age: u64,
    show_events: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            line_width: DEFAULT_LINE_WIDTH,
            font_size: DEFAULT_FONT_SIZE,
            show_label: DEFAULT_SHOW_LABEL,
            show_confidence: DEFAULT_SHOW_CONFIDENCE,
            show_id: DEFAULT_SHOW_ID,
            stale_age: DEFAULT_STALE_AGE,
            show_events: DEFAULT_SHOW_EVENTS,
        }
    }
}

struct State {
    info: Option<gst_video::VideoInfo>,
    text: TextRenderer,
    shapes: ShapeCache,
}

#[derive(Default)]
pub struct DetectOverlay {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

/// Reads the ROI metas of a buffer into what to draw.
fn annotations(buffer: &gst::BufferRef, settings: &Settings) -> Vec<Annotation> {
    crate::pads::read_regions(buffer)
        .into_iter()
        .map(|region| {
            let mut text = Vec::new();
            if settings.show_label {
                text.push(region.label().to_string());
            }
            if settings.show_confidence
                && let Some(confidence) = region.confidence
            {
                text.push(format!("{:.0}%", confidence * 100.0));
            }
            if settings.show_id
                && let Some(id) = region.tracking_id
            {
                text.push(format!("#{id}"));
            }
            let age = region.age.unwrap_or(0);
            Annotation {
                rect: Rect::from_pixels(region.rect),
                color: class_color(region.label()),
                label: text.join(" "),
                stale: settings.stale_age > 0 && age.unsigned_abs() > settings.stale_age,
            }
        })
        .collect()
}

#[glib::object_subclass]
impl ObjectSubclass for DetectOverlay {
    const NAME: &'static str = "GstDetectOverlay";
    type Type = super::DetectOverlay;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for DetectOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            vec![
                glib::ParamSpecUInt::builder("line-width")
                    .nick("Line width")
                    .blurb("Box outline width in pixels (0: about 1/270 of the frame height, at least 2).")
                    .maximum(64)
                    .default_value(DEFAULT_LINE_WIDTH)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("font-size")
                    .nick("Font size")
                    .blurb("Label text height in pixels (0: about 1/36 of the frame height, at least 12).")
                    .maximum(512)
                    .default_value(DEFAULT_FONT_SIZE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("show-label")
                    .nick("Show label")
                    .blurb("Write the class name above each box.")
                    .default_value(DEFAULT_SHOW_LABEL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("show-confidence")
                    .nick("Show confidence")
                    .blurb("Write the confidence (percent) above each box.")
                    .default_value(DEFAULT_SHOW_CONFIDENCE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("show-id")
                    .nick("Show tracking id")
                    .blurb("Write the tracking id (#n) of objects that have one (an `object_id` parameter).")
                    .default_value(DEFAULT_SHOW_ID)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("stale-age")
                    .nick("Stale age")
                    .blurb(
                        "Draw results older than this many nanoseconds (their `age` field) dimmed and \
                         dashed (0: never).",
                    )
                    .default_value(DEFAULT_STALE_AGE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("show-events")
                    .nick("Show events")
                    .blurb(
                        "Draw the zones and lines a detectevents element upstream judges, with their live \
                         counts (from its DetectEventsMeta).",
                    )
                    .default_value(DEFAULT_SHOW_EVENTS)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        match pspec.name() {
            "line-width" => settings.line_width = value.get().unwrap_or(DEFAULT_LINE_WIDTH),
            "font-size" => settings.font_size = value.get().unwrap_or(DEFAULT_FONT_SIZE),
            "show-label" => settings.show_label = value.get().unwrap_or(DEFAULT_SHOW_LABEL),
            "show-confidence" => settings.show_confidence = value.get().unwrap_or(DEFAULT_SHOW_CONFIDENCE),
            "show-id" => settings.show_id = value.get().unwrap_or(DEFAULT_SHOW_ID),
            "stale-age" => settings.stale_age = value.get().unwrap_or(DEFAULT_STALE_AGE),
            "show-events" => settings.show_events = value.get().unwrap_or(DEFAULT_SHOW_EVENTS),
            other => gst::warning!(CAT, imp = self, "Unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "line-width" => settings.line_width.to_value(),
            "font-size" => settings.font_size.to_value(),
            "show-label" => settings.show_label.to_value(),
            "show-confidence" => settings.show_confidence.to_value(),
            "show-id" => settings.show_id.to_value(),
            "stale-age" => settings.stale_age.to_value(),
            "show-events" => settings.show_events.to_value(),
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for DetectOverlay {}

impl ElementImpl for DetectOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Detection overlay",
                "Filter/Effect/Video",
                "Draws every GstVideoRegionOfInterestMeta on the video in place: a box in the \
                 class's colour, the label, confidence and tracking id; and the zones, lines and \
                 live counts of a detectevents element upstream",
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

impl BaseTransformImpl for DetectOverlay {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = Some(State {
            info: None,
            text: TextRenderer::new(),
            shapes: ShapeCache::default(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = None;
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "Unsupported caps {incaps:?}"))?;
        if let Some(state) = lock(&self.state).as_mut() {
            state.info = Some(info);
        }
        Ok(())
    }

    fn transform_ip(&self, buffer: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let annotations = annotations(buffer, &settings);
        let mut guard = lock(&self.state);
        let Some(state) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let scene = if settings.show_events {
            read_scene(buffer, &mut state.shapes).filter(|scene| !scene.is_empty())
        } else {
            None
        };
        // Frames with nothing to draw go through untouched: their pixels are never mapped.
        if annotations.is_empty() && scene.is_none() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let Some(info) = state.info.clone() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        let line_width = match settings.line_width {
            0 => (info.height() / 270).max(2),
            w => w,
        };
        let font_size = match settings.font_size {
            0 => (info.height() / 36).max(12),
            s => s,
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
        if let Some(scene) = &scene {
            draw_scene(&mut canvas, &mut state.text, scene, line_width, font_size);
        }
        draw_annotations(&mut canvas, &mut state.text, &annotations, line_width, font_size);
        gst::log!(CAT, imp = self, "Drew {} objects", annotations.len());
        Ok(gst::FlowSuccess::Ok)
    }
}
