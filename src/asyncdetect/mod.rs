//! `asyncdetect`: object detection that never holds up the video.
//!
//! Frames pass straight through. The newest frame is handed to an internal inference thread that
//! owns an ONNX Runtime session; the newest finished result is attached to every buffer that passes
//! as `GstVideoRegionOfInterestMeta` (one per object, `roi_type` = label, a `detection` parameter
//! structure as DL Streamer writes it) and posted on the bus as an `asyncdetect` element message.
//!
//! ```text
//! gst-launch-1.0 filesrc location=street.mp4 ! decodebin ! videoconvert ! asyncdetect ! fakesink
//! ```

use gst::glib;
use gst::prelude::*;

mod aliases;
mod follow;
mod handoff;
mod imp;
mod inference;
mod mailbox;
mod meta;
mod properties;
mod server;
mod settings;
mod stats;
mod worker;

pub use follow::grey_frame;

pub(crate) static CAT: once_cell::sync::Lazy<gst::DebugCategory> = once_cell::sync::Lazy::new(|| {
    gst::DebugCategory::new(
        "asyncdetect",
        gst::DebugColorFlags::empty(),
        Some("Object detection on an inference thread"),
    )
});

glib::wrapper! {
    pub struct AsyncDetect(ObjectSubclass<imp::AsyncDetect>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// When a frame's own result is attached.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAsyncDetectMode")]
pub enum AsyncDetectMode {
    /// Frames never wait: each buffer carries the newest finished result.
    #[default]
    #[enum_value(
        name = "Async: frames pass at once and carry the newest finished result",
        nick = "async"
    )]
    Async,
    /// Each frame waits for its own result: for offline files and checking correctness.
    #[enum_value(
        name = "Sync: every frame waits for its own result (blocks the stream)",
        nick = "sync"
    )]
    Sync,
}

/// The model input's colour channel order.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAsyncDetectChannelOrder")]
pub enum AsyncDetectChannelOrder {
    #[enum_value(name = "RGB (TensorFlow and most exports)", nick = "rgb")]
    Rgb,
    #[enum_value(name = "BGR (OpenCV/Caffe-style models)", nick = "bgr")]
    Bgr,
    #[default]
    #[enum_value(
        name = "Auto: what the model family is trained with (BGR for NanoDet, RGB otherwise)",
        nick = "auto"
    )]
    Auto,
}

/// What `asyncdetect` does across frames.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAsyncDetectTracking")]
pub enum AsyncDetectTracking {
    /// Each result stands alone.
    #[default]
    #[enum_value(name = "None: results as detected, no ids", nick = "none")]
    None,
    /// Objects keep an id while they stay in view (IoU association).
    #[enum_value(name = "IoU: stable object ids", nick = "iou")]
    Iou,
    /// Ids, and boxes moved forward to each buffer's time from the objects' velocities.
    #[enum_value(
        name = "Predict: stable ids and boxes that follow motion between inferences",
        nick = "predict"
    )]
    Predict,
    /// Ids, and boxes that follow their objects through every frame by image motion (optical
    /// flow), results carried from the analysed frame to the newest.
    #[enum_value(
        name = "Visual: stable ids and boxes that follow the objects in the picture on every frame",
        nick = "visual"
    )]
    Visual,
}

/// Which output decoder `asyncdetect` uses.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAsyncDetectDecoder")]
pub enum AsyncDetectDecoder {
    #[default]
    #[enum_value(name = "Auto: recognised from the model's outputs", nick = "auto")]
    Auto,
    #[enum_value(
        name = "SSD with post-processing (boxes, classes, scores, count)",
        nick = "ssd"
    )]
    Ssd,
    #[enum_value(name = "YOLO raw output (v8 or v5 layout), NMS in the element", nick = "yolo")]
    Yolo,
    #[enum_value(name = "BlazeFace anchors (MediaPipe face detection)", nick = "blazeface")]
    BlazeFace,
    #[enum_value(
        name = "NanoDet: per-stride class and box-distribution pairs, NMS in the element",
        nick = "nanodet"
    )]
    NanoDet,
}

/// Where ONNX Runtime runs the model (its execution provider).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAsyncDetectExecutionProvider")]
pub enum AsyncDetectExecutionProvider {
    #[default]
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu,
    #[enum_value(name = "OpenVINO (Intel CPUs, GPUs and NPUs)", nick = "openvino")]
    OpenVino,
    #[enum_value(name = "CUDA (NVIDIA GPUs)", nick = "cuda")]
    Cuda,
    #[enum_value(name = "TensorRT (NVIDIA GPUs)", nick = "tensorrt")]
    TensorRt,
}

/// How `asyncdetect` fits a frame into the model's input.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAsyncDetectInputResize")]
pub enum AsyncDetectInputResize {
    #[default]
    #[enum_value(
        name = "Auto: letterbox for YOLO models, stretch for the others (what each is trained with)",
        nick = "auto"
    )]
    Auto,
    #[enum_value(name = "Stretch: scaled to the input size, aspect ignored", nick = "stretch")]
    Stretch,
    #[enum_value(
        name = "Letterbox: scaled keeping aspect, centred on grey (114)",
        nick = "letterbox"
    )]
    Letterbox,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    AsyncDetectMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    AsyncDetectChannelOrder::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    AsyncDetectTracking::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    AsyncDetectDecoder::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    AsyncDetectExecutionProvider::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    AsyncDetectInputResize::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "asyncdetect",
        gst::Rank::NONE,
        AsyncDetect::static_type(),
    )
}
