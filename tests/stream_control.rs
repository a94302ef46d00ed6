//! Per-stream control: `interval` and `max-fps` rate limits, the `roi` region of interest and
//! `motion-gating`, on real frames with the built-in model.

mod common;

use common::*;
use gst::glib;
use gst::prelude::*;

fn sync_harness(extra: &[(&str, glib::Value)], caps: &gst::Caps) -> gst_check::Harness {
    let mut properties = vec![
        ("mode", gstasyncdetect::AsyncDetectMode::Sync.to_value()),
        ("threshold", 0.5f64.to_value()),
    ];
    properties.extend(extra.iter().cloned());
    harness(&properties, caps)
}

/// Pushes `count` copies of the photo at 30 fps and returns (frames inferred, buffers that
/// carried the person).
fn run_rate(extra: &[(&str, glib::Value)], count: u64) -> (u64, usize) {
    let (frame, caps) = photo_frame("I420", 640, 424);
    let mut h = sync_harness(extra, &caps);
    let mut with_person = 0;
    for k in 0..count {
        h.push(timestamped(&frame, k)).unwrap();
        let out = h.pull().unwrap();
        if rois(&out).iter().any(|r| r.label == "person") {
            with_person += 1;
        }
    }
    let inferred = h.element().unwrap().property::<u64>("frames-inferred");
    (inferred, with_person)
}

#[test]
fn interval_and_max_fps_limit_inference_and_every_buffer_keeps_the_result() {
    init();
    // 30 frames = 1 s of video.
    let (every, carried) = run_rate(&[], 30);
    assert_eq!((every, carried), (30, 30));
    let (third, carried) = run_rate(&[("interval", 3u32.to_value())], 30);
    assert_eq!(third, 10, "frames 1, 4, 7 ... 28");
    assert_eq!(carried, 30, "buffers in between carry the newest result");
    let (ten_fps, carried) = run_rate(&[("max-fps", 10.0f64.to_value())], 30);
    assert_eq!(ten_fps, 10, "one frame per 100 ms of stream time");
    assert_eq!(carried, 30);
    // Both: the stricter one wins.
    let (both, _) = run_rate(
        &[("interval", 2u32.to_value()), ("max-fps", 5.0f64.to_value())],
        30,
    );
    assert_eq!(both, 5);
}

/// A region of interest crops before scaling and maps boxes back to the whole frame: the left half
/// finds the person where the whole frame does; the right half finds the horse and no person; a
/// polygon keeps only objects whose centre lies inside it.
#[test]
fn roi_restricts_inference_and_boxes_stay_in_frame_coordinates() {
    init();
    let (frame, caps) = photo_frame("I420", 640, 424);
    let detect = |roi: &str| {
        let mut h = sync_harness(&[("roi", roi.to_value())], &caps);
        h.push(timestamped(&frame, 0)).unwrap();
        rois(&h.pull().unwrap())
    };
    let left = detect("0,0,0.5,1");
    let person = left
        .iter()
        .find(|r| r.label == "person")
        .expect("person in the left half");
    assert!(
        iou(person.norm, person_box()) > 0.75,
        "box mapped back to the frame: {:?}",
        person.norm
    );
    assert!(left.iter().all(|r| r.norm[0] + r.norm[2] < 1.0 + 1e-6));
    let right = detect("0.5,0,0.5,1");
    let labels: Vec<&str> = right.iter().map(|r| r.label.as_str()).collect();
    assert!(labels.contains(&"horse"), "{labels:?}");
    assert!(!labels.contains(&"person"), "{labels:?}");
    assert!(right.iter().all(|r| r.norm[0] >= 0.5 - 0.02), "{right:?}");
    // A triangle over the left half whose hypotenuse passes left of the person's centre
    // (x 0.35, y 0.57): inference runs on its bounding box (the left half), the person is dropped.
    let triangle = detect("0,0 0.5,0 0,1");
    assert!(!triangle.iter().any(|r| r.label == "person"), "{triangle:?}");
    // The same triangle mirrored contains the person's centre.
    let mirrored = detect("0,0 0.5,0 0.5,1");
    assert!(mirrored.iter().any(|r| r.label == "person"), "{mirrored:?}");
}

/// A region outside the frame is refused with a warning and the previous region stays in force: the
/// next frame is still analysed on its left half only (the person, not the horse).
#[test]
fn a_malformed_roi_is_refused_with_a_warning() {
    init();
    let (frame, caps) = photo_frame("I420", 640, 424);
    let (mut h, bus, element) = harness_with_bus(
        &[
            ("mode", gstasyncdetect::AsyncDetectMode::Sync.to_value()),
            ("threshold", 0.5f64.to_value()),
            ("roi", "0,0,0.5,1".to_value()),
        ],
        &caps,
    );
    element.set_property("roi", "0.5,0.5,0.9,0.9");
    let found = warnings(&bus);
    assert!(
        found
            .iter()
            .any(|w| w.contains("roi") && w.contains("inside the frame")),
        "{found:?}"
    );
    assert_eq!(element.property::<String>("roi"), "0,0,0.5,1");
    h.push(timestamped(&frame, 0)).unwrap();
    let labels: Vec<String> = rois(&h.pull().unwrap()).into_iter().map(|r| r.label).collect();
    assert!(labels.contains(&"person".to_string()), "{labels:?}");
    assert!(!labels.contains(&"horse".to_string()), "{labels:?}");
}

/// With motion gating a still picture runs the model once; the result stays on every buffer; a
/// moving picture runs it again.
#[test]
fn motion_gating_skips_still_pictures_and_resumes_on_motion() {
    init();
    let (photo, caps) = photo_frame("RGB", 640, 424);
    let mut h = sync_harness(&[("motion-gating", true.to_value())], &caps);
    let mut carried = 0;
    for k in 0..15 {
        h.push(timestamped(&photo, k)).unwrap();
        if rois(&h.pull().unwrap()).iter().any(|r| r.label == "person") {
            carried += 1;
        }
    }
    let element = h.element().unwrap();
    let still_inferred = element.property::<u64>("frames-inferred");
    let unchanged = element.property::<u64>("frames-unchanged");
    assert_eq!(carried, 15, "the result stays on every buffer");
    assert_eq!((still_inferred, unchanged), (1, 14));
    // The scene changes: a black frame, then the photo again.
    let black = gst::Buffer::from_mut_slice(vec![0u8; 640 * 424 * 3]);
    h.push(timestamped(&black, 15)).unwrap();
    let out = h.pull().unwrap();
    assert!(
        rois(&out).iter().all(|r| r.label != "person"),
        "the black frame was inferred"
    );
    h.push(timestamped(&photo, 16)).unwrap();
    assert!(rois(&h.pull().unwrap()).iter().any(|r| r.label == "person"));
    assert_eq!(element.property::<u64>("frames-inferred"), 3);
}
