//! Helpers shared by the integration tests: plugin registration, real frames decoded from a photo,
//! and reading the ROI metas back.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Once;

use gst::glib;
use gst::prelude::*;
use gst_video::prelude::*;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstasyncdetect::plugin_register_static().expect("plugin registers");
    });
}

pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join(name)
}

/// Every raw format the drawing elements take.
pub const ALL_FORMATS: [&str; 19] = [
    "I420", "YV12", "NV12", "NV21", "Y42B", "Y444", "YUY2", "UYVY", "RGB", "BGR", "RGBA", "BGRA", "ARGB",
    "ABGR", "RGBx", "BGRx", "xRGB", "xBGR", "GRAY8",
];

/// Parses `description` (which must end in `appsink name=sink`), starts it and returns both.
pub fn playing_with_appsink(description: &str) -> (gst::Pipeline, gst_app::AppSink) {
    let pipeline = gst::parse::launch(description)
        .expect("pipeline parses")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let sink = pipeline
        .by_name("sink")
        .expect("appsink named sink")
        .downcast::<gst_app::AppSink>()
        .expect("an appsink");
    pipeline.set_state(gst::State::Playing).expect("pipeline plays");
    (pipeline, sink)
}

/// The test photo (a person, a dog and a horse) decoded and scaled to `format` at `width`x`height`
/// with GStreamer itself, as a real camera frame would arrive.
pub fn photo_frame(format: &str, width: u32, height: u32) -> (gst::Buffer, gst::Caps) {
    let (pipeline, sink) = playing_with_appsink(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! \
         video/x-raw,format={format},width={width},height={height},pixel-aspect-ratio=1/1 ! \
         appsink name=sink sync=false",
        data_path("data/person.jpg").display()
    ));
    let sample = sink.pull_sample().expect("a decoded frame");
    pipeline
        .set_state(gst::State::Null)
        .expect("decode pipeline stops");
    let caps = sample.caps().expect("caps").to_owned();
    let caps = caps
        .iter()
        .next()
        .map(|s| {
            let mut s = s.to_owned();
            s.set("framerate", gst::Fraction::new(30, 1));
            gst::Caps::builder_full().structure(s).build()
        })
        .expect("one structure");
    (sample.buffer_owned().expect("buffer"), caps)
}

/// A ROI meta read back from a buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Roi {
    pub id: i32,
    pub roi_type: String,
    pub rect: (u32, u32, u32, u32),
    pub label: String,
    pub label_id: i32,
    pub confidence: f64,
    pub norm: [f64; 4],
    pub frame_timestamp: Option<u64>,
    pub age: Option<i64>,
}

pub fn rois(buffer: &gst::BufferRef) -> Vec<Roi> {
    buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .map(|meta| {
            let params = meta.param("detection").expect("a detection structure");
            Roi {
                id: meta.id(),
                roi_type: meta.roi_type().to_string(),
                rect: meta.rect(),
                label: params.get::<String>("label").expect("label"),
                label_id: params.get::<i32>("label_id").expect("label_id"),
                confidence: params.get::<f64>("confidence").expect("confidence"),
                norm: ["x_min", "y_min", "x_max", "y_max"].map(|f| params.get::<f64>(f).expect(f)),
                frame_timestamp: params.get::<u64>("frame_timestamp").ok(),
                age: params.get::<i64>("age").ok(),
            }
        })
        .collect()
}

pub fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// Where the person stands in the test photo (normalised x_min, y_min, x_max, y_max), as the
/// built-in model finds it when run directly with ONNX Runtime.
pub const PERSON_BOX: [f64; 4] = [0.284, 0.245, 0.420, 0.886];

/// An `asyncdetect` with the given properties set before it starts.
pub fn detector(properties: &[(&str, glib::Value)]) -> gst::Element {
    let element = gst::ElementFactory::make("asyncdetect")
        .build()
        .expect("asyncdetect");
    for (name, value) in properties {
        element.set_property_from_value(name, value);
    }
    element
}

/// A harness around a detector, with the frame's caps set.
pub fn harness(properties: &[(&str, glib::Value)], caps: &gst::Caps) -> gst_check::Harness {
    let mut h = gst_check::Harness::with_element(&detector(properties), Some("sink"), Some("src"));
    h.set_src_caps(caps.clone());
    h
}

/// A harness around a detector whose messages go to the returned bus.
pub fn harness_with_bus(
    properties: &[(&str, glib::Value)],
    caps: &gst::Caps,
) -> (gst_check::Harness, gst::Bus, gst::Element) {
    let element = detector(properties);
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(caps.clone());
    (h, bus, element)
}

/// The texts of the warnings waiting on `bus`.
pub fn warnings(bus: &gst::Bus) -> Vec<String> {
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect()
}

pub fn timestamped(buffer: &gst::Buffer, index: u64) -> gst::Buffer {
    let mut buffer = buffer.copy();
    {
        let b = buffer.get_mut().expect("fresh copy is writable");
        b.set_pts(gst::ClockTime::from_mseconds(33 * index));
        b.set_duration(gst::ClockTime::from_mseconds(33));
    }
    buffer
}

/// Waits for the first error message on `bus` (or gives up after `seconds`).
pub fn wait_for_error(bus: &gst::Bus, seconds: u64) -> Option<String> {
    let message =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(seconds), &[gst::MessageType::Error])?;
    match message.view() {
        gst::MessageView::Error(e) => Some(format!("{} ({})", e.error(), e.debug().unwrap_or_default())),
        _ => None,
    }
}

/// A solid grey-blue frame in `format`, made by GStreamer.
pub fn solid_frame(format: &str, width: u32, height: u32) -> (gst::Buffer, gst::Caps) {
    let (pipeline, sink) = playing_with_appsink(&format!(
        "videotestsrc num-buffers=1 pattern=solid-color foreground-color=0xff506070 ! \
         video/x-raw,format=AYUV,width={width},height={height} ! videoconvert ! \
         video/x-raw,format={format},width={width},height={height},framerate=30/1 ! appsink name=sink"
    ));
    let sample = sink.pull_sample().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    (sample.buffer_owned().unwrap(), sample.caps().unwrap().to_owned())
}

/// Component `c` of pixel (x, y), read through GStreamer's description of the format.
pub fn component(
    frame: &gst_video::VideoFrame<gst_video::video_frame::Readable>,
    c: u32,
    x: u32,
    y: u32,
) -> u8 {
    let info = frame.format_info();
    let data = frame.comp_data(c).unwrap();
    let (xs, ys) = (x >> info.w_sub()[c as usize], y >> info.h_sub()[c as usize]);
    let index = ys as usize * frame.comp_stride(c) as usize + xs as usize * frame.comp_pstride(c) as usize;
    // comp_data() already starts at the component's offset within the pixel group.
    data[index]
}

/// The pixels whose main components (Y, or R/G/B) differ between two frames.
pub fn changed_pixels(before: &gst::Buffer, after: &gst::Buffer, caps: &gst::Caps) -> Vec<(u32, u32)> {
    let info = gst_video::VideoInfo::from_caps(caps).unwrap();
    let a = gst_video::VideoFrame::from_buffer_readable(before.clone(), &info).unwrap();
    let b = gst_video::VideoFrame::from_buffer_readable(after.clone(), &info).unwrap();
    let main: Vec<u32> = if info.format_info().is_yuv() || info.format_info().is_gray() {
        vec![0]
    } else {
        vec![0, 1, 2]
    };
    let mut changed = Vec::new();
    for y in 0..info.height() {
        for x in 0..info.width() {
            if main
                .iter()
                .any(|&c| component(&a, c, x, y) != component(&b, c, x, y))
            {
                changed.push((x, y));
            }
        }
    }
    changed
}
