//! `detectoverlay` draws exactly where the metas say, in every format, and leaves frames without
//! metas bit-identical. Pixels are read back with GStreamer's own component description, not the
//! element's drawing code.

mod common;

use common::*;
use gst::prelude::*;

fn with_roi(buffer: &gst::Buffer, rect: (u32, u32, u32, u32), age: i64) -> gst::Buffer {
    let mut buffer = buffer.copy();
    {
        let b = buffer.get_mut().unwrap();
        let mut meta = gst_video::VideoRegionOfInterestMeta::add(b, "person", rect);
        meta.add_param(
            gst::Structure::builder("detection")
                .field("label", "person")
                .field("label_id", 0i32)
                .field("confidence", 0.87f64)
                .field("age", age)
                .build(),
        );
    }
    buffer
}

fn overlay(caps: &gst::Caps, properties: &[(&str, gst::glib::Value)]) -> gst_check::Harness {
    let element = gst::ElementFactory::make("detectoverlay").build().unwrap();
    for (name, value) in properties {
        element.set_property_from_value(name, value);
    }
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(caps.clone());
    h
}

fn boxes_only() -> Vec<(&'static str, gst::glib::Value)> {
    vec![
        ("show-label", false.to_value()),
        ("show-confidence", false.to_value()),
        ("line-width", 2u32.to_value()),
    ]
}

#[test]
fn frames_without_metas_pass_bit_identical() {
    init();
    for format in ALL_FORMATS {
        let (frame, caps) = solid_frame(format, 64, 48);
        let mut h = overlay(&caps, &[]);
        h.push(frame.clone()).unwrap();
        let out = h.pull().unwrap();
        assert_eq!(
            out.map_readable().unwrap().as_slice(),
            frame.map_readable().unwrap().as_slice(),
            "{format}"
        );
    }
}

#[test]
fn boxes_change_exactly_their_outline_in_every_format() {
    init();
    let (x0, y0, w, h) = (10u32, 12u32, 20u32, 16u32);
    for format in ALL_FORMATS {
        let (frame, caps) = solid_frame(format, 64, 48);
        let mut harness = overlay(&caps, &boxes_only());
        harness.push(with_roi(&frame, (x0, y0, w, h), 0)).unwrap();
        let out = harness.pull().unwrap();
        let changed = changed_pixels(&frame, &out, &caps);
        let expected: Vec<(u32, u32)> = (0..48)
            .flat_map(|y| (0..64).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let inside = x >= x0 && x < x0 + w && y >= y0 && y < y0 + h;
                inside && (x < x0 + 2 || x >= x0 + w - 2 || y < y0 + 2 || y >= y0 + h - 2)
            })
            .collect();
        assert_eq!(changed, expected, "{format}");
    }
}

#[test]
fn labels_go_above_the_box_and_nowhere_else() {
    init();
    let (x0, y0, w, h) = (40u32, 60u32, 50u32, 40u32);
    for format in ["I420", "NV12", "BGRx", "RGBA"] {
        let (frame, caps) = solid_frame(format, 160, 120);
        let mut harness = overlay(
            &caps,
            &[("font-size", 12u32.to_value()), ("line-width", 2u32.to_value())],
        );
        harness.push(with_roi(&frame, (x0, y0, w, h), 0)).unwrap();
        let out = harness.pull().unwrap();
        let changed = changed_pixels(&frame, &out, &caps);
        let in_box = |x: u32, y: u32| x >= x0 && x < x0 + w && y >= y0 && y < y0 + h;
        let in_label_band = |x: u32, y: u32| x >= x0 && y < y0 && y + 24 >= y0;
        assert!(
            changed.iter().any(|&(x, y)| in_label_band(x, y)),
            "{format}: no label drawn"
        );
        let stray: Vec<_> = changed
            .iter()
            .filter(|&&(x, y)| !in_box(x, y) && !in_label_band(x, y))
            .collect();
        assert!(
            stray.is_empty(),
            "{format}: pixels changed outside box and label: {stray:?}"
        );
        // Inside the box, away from the outline, nothing is drawn.
        assert!(
            changed
                .iter()
                .all(|&(x, y)| !(x > x0 + 2 && x < x0 + w - 3 && y > y0 + 2 && y < y0 + h - 3))
        );
    }
}

#[test]
fn stale_results_are_dashed() {
    init();
    let (frame, caps) = solid_frame("I420", 64, 48);
    let mut harness = overlay(&caps, &boxes_only());
    harness
        .push(with_roi(&frame, (10, 12, 40, 30), 2_000_000_000))
        .unwrap();
    let stale = harness.pull().unwrap();
    harness.push(with_roi(&frame, (10, 12, 40, 30), 0)).unwrap();
    let fresh = harness.pull().unwrap();
    let stale_changed = changed_pixels(&frame, &stale, &caps).len();
    let fresh_changed = changed_pixels(&frame, &fresh, &caps).len();
    assert!(
        stale_changed > 0 && stale_changed < fresh_changed,
        "{stale_changed} vs {fresh_changed}"
    );
}

#[test]
fn tracking_ids_are_shown_when_present() {
    init();
    let (frame, caps) = solid_frame("RGBx", 160, 120);
    let mut with_id = with_roi(&frame, (40, 60, 50, 40), 0);
    {
        let b = with_id.get_mut().unwrap();
        let mut meta = b.meta_mut::<gst_video::VideoRegionOfInterestMeta>().unwrap();
        meta.add_param(gst::Structure::builder("object_id").field("id", 42i32).build());
    }
    let mut harness = overlay(&caps, &[("font-size", 12u32.to_value())]);
    harness.push(with_roi(&frame, (40, 60, 50, 40), 0)).unwrap();
    let without = harness.pull().unwrap();
    harness.push(with_id).unwrap();
    let with = harness.pull().unwrap();
    // The label tab grows to make room for "#42".
    assert!(changed_pixels(&frame, &with, &caps).len() > changed_pixels(&frame, &without, &caps).len());
}

/// The real chain: the detector's metas drawn on a real photo.
#[test]
fn draws_what_asyncdetect_found() {
    init();
    let (frame, caps) = photo_frame("I420", 640, 424);
    let pipeline_element =
        gst::parse::bin_from_description("asyncdetect mode=sync ! detectoverlay", true).unwrap();
    let mut h = gst_check::Harness::with_element(&pipeline_element, Some("sink"), Some("src"));
    h.set_src_caps(caps.clone());
    h.push(timestamped(&frame, 0)).unwrap();
    let out = h.pull().unwrap();
    let person = rois(&out)
        .into_iter()
        .find(|r| r.label == "person")
        .expect("a person");
    let changed = changed_pixels(&frame, &out, &caps);
    let (x, y, w, _) = person.rect;
    // The person's left edge is drawn.
    assert!(changed.contains(&(x, y + 50)) && changed.contains(&(x + w / 2, y)));
}
