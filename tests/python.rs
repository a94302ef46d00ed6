//! Embedding from Python: the `read-detections` action signal returns what the ROI metas carry,
//! and `examples/embed.py` (Debian's python3 + gi, as a user runs it) reads detections from
//! buffers and bus messages of a real clip.

mod common;

use common::*;
use gst::prelude::*;

/// The signal lists every ROI meta of a buffer with its label, confidence, corners, pixel
/// rectangle, ROI id and track id: what a binding that cannot walk metas needs.
#[test]
fn read_detections_returns_every_roi_meta() {
    init();
    let (photo, caps) = photo_frame("RGB", 640, 424);
    let element = detector(&[
        ("mode", gstasyncdetect::AsyncDetectMode::Sync.to_value()),
        ("tracking", gstasyncdetect::AsyncDetectTracking::Iou.to_value()),
    ]);
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(caps);
    h.push(timestamped(&photo, 0)).unwrap();
    let out = h.pull().unwrap();
    let expected = rois(&out);
    assert!(expected.iter().any(|r| r.label == "person"), "{expected:?}");

    let read = element.emit_by_name::<gst::Structure>("read-detections", &[&out]);
    let listed = read.get::<gst::List>("detections").expect("a detections list");
    assert_eq!(listed.len(), expected.len());
    for (value, roi) in listed.iter().zip(&expected) {
        let entry = value.get::<gst::Structure>().expect("a structure");
        assert_eq!(entry.get::<String>("label").unwrap(), roi.label);
        assert_eq!(entry.get::<i32>("label_id").unwrap(), roi.label_id);
        assert_eq!(entry.get::<f64>("confidence").unwrap(), roi.confidence);
        for (name, value) in ["x_min", "y_min", "x_max", "y_max"].iter().zip(roi.norm) {
            assert_eq!(entry.get::<f64>(*name).unwrap(), value);
        }
        let rect = ["x", "y", "width", "height"].map(|name| entry.get::<u32>(name).unwrap());
        assert_eq!((rect[0], rect[1], rect[2], rect[3]), roi.rect);
        assert_eq!(entry.get::<i32>("roi_id").unwrap(), roi.id);
        // Tracking on: the ROI id is the track id.
        assert_eq!(entry.get::<i32>("object_id").unwrap(), roi.id);
    }

    // A buffer without metas gives an empty list, not an error.
    let bare = element.emit_by_name::<gst::Structure>("read-detections", &[&gst::Buffer::new()]);
    assert!(bare.get::<gst::List>("detections").unwrap().is_empty());
}

/// The Python example, run as the README says, prints tracked detections read from buffers and
/// the results of bus messages; every box lies inside the clip's frame.
#[test]
fn python_example_reads_buffers_and_messages() {
    init();
    let plugin = built("libgstasyncdetect.so", &["--lib"]);
    let clip = demo_clip();
    let output = std::process::Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/embed.py"))
        .arg(&clip)
        .arg("tracking=iou")
        .env("GST_PLUGIN_PATH", plugin.parent().expect("plugin directory"))
        .env_remove("G_DEBUG")
        .output()
        .expect("/usr/bin/python3 with GObject bindings (scripts/setup.sh installs them)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let buffer_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("buffer")).collect();
    let message_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("message")).collect();
    assert!(
        !message_lines.is_empty(),
        "no result messages read:\n{stdout}\n{stderr}"
    );
    assert!(
        buffer_lines
            .iter()
            .any(|l| l.contains("person") && l.contains('#')),
        "no tracked person read from a buffer:\n{stdout}"
    );
    // Each object reads "label NN% #id at x,y wxh"; the clip is 640x272.
    for line in &buffer_lines {
        for object in line.split(", ") {
            let (_, place) = object.rsplit_once(" at ").expect(object);
            let (origin, size) = place.split_once(' ').expect(object);
            let numbers: Vec<u32> = origin
                .split(',')
                .chain(size.split('x'))
                .map(|n| n.parse().expect(object))
                .collect();
            assert!(
                numbers[0] + numbers[2] <= 640 && numbers[1] + numbers[3] <= 272,
                "{object}"
            );
        }
    }
}
