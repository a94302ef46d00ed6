//! What a result puts on buffers and on the bus. The inference thread builds each detection's
//! parameter structures once per result ([`InferenceResult::new`]); the streaming thread then only
//! copies them onto each buffer as `GstVideoRegionOfInterestMeta`, adding the per-buffer fields.
//! Field and ROI-type names are interned once as quarks, because interning a name takes GLib's
//! global quark lock, which an inference thread may be holding.

use std::time::Duration;

use gst::glib;
use gst::glib::translate::IntoGlib;
use gst::meta::MetaAPIExt;
use gst::prelude::*;
use once_cell::sync::Lazy;

use super::stats::nanos;
use crate::detection::{Detection, NormalizedBox};
use crate::track::Velocity;

/// Boxes predicted from the velocities of detections are moved forward at most this far: past
/// it, a velocity is a guess.
pub const DETECTION_PREDICTION: f64 = 1.0;
/// Boxes the visual tracker followed are moved forward at most this far, the frames it is
/// expected to lag behind; when it falls further behind, extrapolating its motion would
/// overshoot.
pub const VISUAL_PREDICTION: f64 = 0.1;

/// Field names set on the streaming thread, interned once.
struct Names {
    age: glib::Quark,
    predicted: glib::Quark,
    corners: [glib::Quark; 4],
}

static NAMES: Lazy<Names> = Lazy::new(|| Names {
    age: glib::Quark::from_str("age"),
    predicted: glib::Quark::from_str("predicted"),
    corners: ["x_min", "y_min", "x_max", "y_max"].map(glib::Quark::from_str),
});

/// One detection as it goes onto buffers: ready-made, copied per buffer.
#[derive(Debug)]
struct Roi {
    roi_type: glib::Quark,
    /// The `detection` structure (DL Streamer's layout), with `frame_timestamp`.
    detection: gst::Structure,
    /// The `object_id` structure of a tracked object, and its id.
    track: Option<(u32, Velocity, gst::Structure)>,
}

/// A finished inference, ready to attach.
#[derive(Debug)]
pub struct InferenceResult {
    pub seq: u64,
    /// Presentation timestamp of the frame the model saw.
    pub frame_pts: Option<gst::ClockTime>,
    pub detections: Vec<Detection>,
    /// Move tracked boxes forward to the time of the buffer they are attached to, by at most
    /// this many seconds (0: not at all).
    predict_for: f64,
    rois: Vec<Roi>,
}

impl InferenceResult {
    /// A result and its ready-made metas; `tracks` holds the track id and velocity of each
    /// detection when tracking (empty otherwise).
    pub fn new(
        seq: u64,
        frame_pts: Option<gst::ClockTime>,
        detections: Vec<Detection>,
        tracks: Vec<(u32, Velocity)>,
        predict_for: f64,
    ) -> Self {
        let rois = detections
            .iter()
            .enumerate()
            .map(|(index, detection)| {
                let mut structure = detection_structure(detection);
                if let Some(then) = frame_pts {
                    structure.set("frame_timestamp", then.nseconds());
                }
                Roi {
                    roi_type: glib::Quark::from_str(detection.label.as_str()),
                    detection: structure,
                    track: tracks.get(index).map(|&(id, velocity)| {
                        let object = gst::Structure::builder("object_id")
                            .field("id", id as i32)
                            .build();
                        (id, velocity, object)
                    }),
                }
            })
            .collect();
        InferenceResult {
            seq,
            frame_pts,
            detections,
            predict_for,
            rois,
        }
    }

    /// Track id and velocity per detection (empty when not tracking).
    pub fn tracks(&self) -> Vec<(u32, Velocity)> {
        self.rois
            .iter()
            .filter_map(|roi| roi.track.as_ref().map(|(id, velocity, _)| (*id, *velocity)))
            .collect()
    }

    /// Attaches the result to `buffer` as ROI metas sized for `info`, unless it is older than
    /// `max_age` nanoseconds (0 = any age). Returns how many were attached.
    // The quark setters are deprecated for `IdStr` names, which GStreamer before 1.26 interns on
    // every call: the quark lock this avoids.
    #[allow(deprecated)]
    pub fn attach(&self, buffer: &mut gst::BufferRef, info: &gst_video::VideoInfo, max_age: u64) -> usize {
        let age = match (buffer.pts(), self.frame_pts) {
            (Some(now), Some(then)) => Some(now.nseconds() as i64 - then.nseconds() as i64),
            _ => None,
        };
        if max_age > 0 && age.is_some_and(|age| age.unsigned_abs() > max_age) {
            return 0;
        }
        // Ids stay distinct from ROIs other elements already put on this buffer.
        let first_id = buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .map(|m| m.id() + 1)
            .max()
            .unwrap_or(0);
        let ahead = age
            .filter(|&age| self.predict_for > 0.0 && age > 0)
            .map(|age| (age as f64 / 1e9).min(self.predict_for));
        let names = &*NAMES;
        for (index, (roi, detection)) in self.rois.iter().zip(&self.detections).enumerate() {
            let mut params = roi.detection.clone();
            if let Some(age) = age {
                params.set_by_quark(names.age, age);
            }
            let mut bbox = detection.bbox;
            if let (Some((_, velocity, _)), Some(seconds)) = (&roi.track, ahead) {
                bbox = crate::track::predict(&detection.bbox, velocity, seconds);
                for (name, value) in names.corners.iter().zip(corners(&bbox)) {
                    params.set_by_quark(*name, value);
                }
                params.set_by_quark(names.predicted, true);
            }
            let rect = bbox.to_pixels(info.width(), info.height());
            let mut meta = add_roi(buffer, roi.roi_type, rect);
            // A tracked object's ROI id is its track id, unless other elements' ROIs are there.
            match &roi.track {
                Some((id, _, _)) if first_id == 0 => meta.set_id(*id as i32),
                _ => meta.set_id(first_id + index as i32),
            }
            meta.add_param(params);
            if let Some((_, _, object)) = &roi.track {
                meta.add_param(object.clone());
            }
        }
        self.rois.len()
    }

    /// The `asyncdetect` element message for this result: the detections as the metas carry them,
    /// the frame's timestamp and the time the inference took.
    pub fn message(&self, latency: Duration) -> gst::Structure {
        result_message(self.frame_pts, &self.detections, latency)
    }
}

/// The `asyncdetect` element message for the detections the model made on the frame at
/// `frame_pts`, in `latency`.
pub fn result_message(
    frame_pts: Option<gst::ClockTime>,
    detections: &[Detection],
    latency: Duration,
) -> gst::Structure {
    let list = gst::List::new(
        detections
            .iter()
            .map(|detection| detection_structure(detection).to_send_value()),
    );
    let mut structure = gst::Structure::builder("asyncdetect")
        .field("inference-latency", nanos(latency))
        .field("detections", list)
        .build();
    if let Some(pts) = frame_pts {
        structure.set("timestamp", pts.nseconds());
    }
    structure
}

fn corners(bbox: &NormalizedBox) -> [f64; 4] {
    [bbox.x_min, bbox.y_min, bbox.x_max, bbox.y_max].map(|v| v as f64)
}

/// The `detection` structure used both in ROI metas and bus messages (DL Streamer's layout).
fn detection_structure(detection: &Detection) -> gst::Structure {
    let [x_min, y_min, x_max, y_max] = corners(&detection.bbox);
    gst::Structure::builder("detection")
        .field("label_id", detection.class_id)
        .field("label", detection.label.as_str())
        .field("confidence", detection.confidence as f64)
        .field("x_min", x_min)
        .field("y_min", y_min)
        .field("x_max", x_max)
        .field("y_max", y_max)
        .build()
}

/// Adds a ROI meta whose type is an already interned quark (the binding's `add` interns the
/// name on every call).
fn add_roi(
    buffer: &mut gst::BufferRef,
    roi_type: glib::Quark,
    (x, y, w, h): (u32, u32, u32, u32),
) -> gst::MetaRefMut<'_, gst_video::VideoRegionOfInterestMeta, gst::meta::Standalone> {
    // SAFETY: `buffer` is a valid writable buffer; the function returns the meta it added to it,
    // which lives as long as the buffer's borrow.
    unsafe {
        let meta = gst_video::ffi::gst_buffer_add_video_region_of_interest_meta_id(
            buffer.as_mut_ptr(),
            roi_type.into_glib(),
            x,
            y,
            w,
            h,
        );
        gst_video::VideoRegionOfInterestMeta::from_mut_ptr(buffer, meta)
    }
}

/// The `read-detections` action signal: every `GstVideoRegionOfInterestMeta` on `buffer` as one
/// structure, for bindings that cannot walk a buffer's metas (PyGObject has no `iterate_meta`
/// and cannot cast a `Gst.Meta`). Runs only when a user asks, on the user's thread.
///
/// The result is a `detections` structure whose `detections` field lists one `detection`
/// structure per ROI: the fields of its `detection` parameter (label, label_id, confidence,
/// normalised corners, age, ...), the ROI's pixel rectangle (`x`, `y`, `width`, `height`), its
/// `roi_id`, and `object_id` when a tracker gave it one. ROIs other elements attached appear with
/// their type as `label`.
pub fn read_detections(buffer: &gst::BufferRef) -> gst::Structure {
    let detections = buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .map(|roi| {
            let mut entry = roi
                .param("detection")
                .map(|params| params.to_owned())
                .unwrap_or_else(|| gst::Structure::new_empty("detection"));
            entry.set_name("detection");
            if !entry.has_field("label") {
                entry.set("label", roi.roi_type());
            }
            let (x, y, width, height) = roi.rect();
            entry.set("x", x);
            entry.set("y", y);
            entry.set("width", width);
            entry.set("height", height);
            entry.set("roi_id", roi.id());
            if let Some(id) = roi
                .param("object_id")
                .and_then(|object| object.get::<i32>("id").ok())
            {
                entry.set("object_id", id);
            }
            entry.to_send_value()
        });
    gst::Structure::builder("detections")
        .field("detections", gst::List::new(detections))
        .build()
}
