//! Property names DL Streamer's `gvadetect` users type, so a `gvadetect ...` line works with
//! `asyncdetect` in its place: each alias is the same property under DL Streamer's name, and the
//! few settings that have no counterpart here are accepted where harmless or refused with what to
//! use instead.

use gst::glib;
use gst::prelude::*;

use super::settings::*;

/// DL Streamer's name and the property it stands for here.
const ALIASES: [(&str, &str); 5] = [
    ("model", "model-location"),
    ("labels-file", "labels-location"),
    ("inference-interval", "interval"),
    ("object-class", "labels"),
    ("nireq", "session-lanes"),
];

/// The property `name` stands for, when it is an alias.
pub fn canonical(name: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map(|(_, canonical)| *canonical)
}

/// Why a DL Streamer setting cannot be honoured, or `None` when it can.
pub fn unsupported(name: &str, value: &glib::Value) -> Option<String> {
    let text = value.get::<Option<String>>().ok().flatten().unwrap_or_default();
    match name {
        "device" if !text.is_empty() && !text.eq_ignore_ascii_case("CPU") => Some(format!(
            "device={text} is not available: asyncdetect runs the model with ONNX Runtime on the CPU"
        )),
        "model-proc" if !text.is_empty() => Some(format!(
            "model-proc={text} is not read: asyncdetect works out pre- and post-processing from \
             the model's inputs and outputs (set decoder, channel-order, input-mean, input-std \
             or input-resize to override)"
        )),
        _ => None,
    }
}

pub fn specs() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("model")
            .nick("Model (DL Streamer)")
            .blurb("DL Streamer's name for model-location: the same property.")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("labels-file")
            .nick("Labels file (DL Streamer)")
            .blurb("DL Streamer's name for labels-location: the same property.")
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("inference-interval")
            .nick("Inference interval (DL Streamer)")
            .blurb(
                "DL Streamer's name for interval: the same property (1: every frame). \
                 DeepStream's interval counts the frames skipped instead: its interval=N is \
                 interval=N+1 here.",
            )
            .minimum(1)
            .maximum(100_000)
            .default_value(DEFAULT_INTERVAL)
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("object-class")
            .nick("Object class (DL Streamer)")
            .blurb("DL Streamer's name for the class filter: the same property as labels.")
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("nireq")
            .nick("Inference requests (DL Streamer)")
            .blurb("DL Streamer's name for session-lanes: the same property.")
            .minimum(0)
            .maximum(64)
            .default_value(DEFAULT_SESSION_LANES)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("device")
            .nick("Device (DL Streamer)")
            .blurb(
                "DL Streamer's inference device. Only CPU is available: another value makes the \
                 element fail to start, naming it.",
            )
            .default_value(Some("CPU"))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("batch-size")
            .nick("Batch size (DL Streamer)")
            .blurb(
                "Accepted for DL Streamer lines and not used: frames of the streams sharing a \
                 model are batched by themselves when the model takes a batch of any size.",
            )
            .minimum(1)
            .maximum(1024)
            .default_value(1)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("model-proc")
            .nick("Model processing file (DL Streamer)")
            .blurb(
                "Not read: pre- and post-processing come from the model's inputs and outputs. A \
                 value makes the element fail to start, saying which properties override them.",
            )
            .mutable_ready()
            .build(),
    ]
}
