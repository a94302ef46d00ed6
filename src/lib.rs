// SPDX-License-Identifier: MIT OR Apache-2.0
#![allow(clippy::non_send_fields_in_send_ty, unused_doc_comments)]

//! GStreamer plugin `asyncdetect`: object detection with ONNX Runtime on an internal worker thread,
//! so the video never waits for the model.
//!
//! The pure logic (pre-processing maths, output decoding, labels, filtering) lives in modules with
//! no GStreamer types, so it can be tested and benchmarked on its own.

use gst::glib;

pub mod abandonable;
mod asyncdetect;
pub mod backoff;
pub mod colour;
pub mod convert;
pub mod decode;
mod detectblur;
mod detectevents;
mod detectexport;
pub mod detection;
mod detectoverlay;
pub mod draw;
pub mod engine;
pub mod events;
pub mod export;
pub mod files;
pub mod geometry;
pub mod labels;
pub mod motion;
pub mod mqtt;
mod pads;
pub mod preprocess;
pub mod priority;
pub mod publish;
pub mod slot;
pub mod snapshot;
pub mod track;
pub mod visual;

pub use asyncdetect::{
    AsyncDetect, AsyncDetectChannelOrder, AsyncDetectDecoder, AsyncDetectExecutionProvider,
    AsyncDetectInputResize, AsyncDetectMode, AsyncDetectTracking, grey_frame,
};
pub use detectblur::{DetectBlur, DetectBlurShape};
pub use detectevents::{DetectEvents, DetectEventsAnchor, META_NAME as DETECT_EVENTS_META};
pub use detectexport::DetectExport;
pub use detectoverlay::DetectOverlay;

/// Locks a mutex, carrying on if another thread panicked while holding it: the panic has been
/// reported already and the data is still usable, so panicking again would only take the
/// streaming thread down too.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    asyncdetect::register(plugin)?;
    detectoverlay::register(plugin)?;
    detectexport::register(plugin)?;
    detectevents::register(plugin)?;
    detectblur::register(plugin)
}

gst::plugin_define!(
    asyncdetect,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    // GStreamer loads only plugins that declare one of its own licence tags; of those, MIT/X11
    // is the one the code's licence (MIT OR Apache-2.0) may be used under.
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    // Cargo.toml's repository when it names one (build.rs).
    env!("PACKAGE_ORIGIN"),
    env!("BUILD_REL_DATE")
);
