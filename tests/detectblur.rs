//! `detectblur` masks exactly the boxes of the chosen classes, in every format, and nothing else.

mod common;

use common::*;
use gst::prelude::*;

/// A varied picture (the SMPTE pattern) in `format`, so pixelation visibly changes it.
fn pattern_frame(format: &str, width: u32, height: u32) -> (gst::Buffer, gst::Caps) {
    let (pipeline, sink) = playing_with_appsink(&format!(
        "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,format=AYUV,width={width},height={height} ! \
         videoconvert ! video/x-raw,format={format},width={width},height={height},framerate=30/1 ! appsink name=sink"
    ));
    let sample = sink.pull_sample().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    (sample.buffer_owned().unwrap(), sample.caps().unwrap().to_owned())
}

fn with_box(buffer: &gst::Buffer, label: &str, rect: (u32, u32, u32, u32)) -> gst::Buffer {
    let mut buffer = buffer.copy();
    gst_video::VideoRegionOfInterestMeta::add(buffer.get_mut().unwrap(), label, rect);
    buffer
}

fn blur(caps: &gst::Caps, properties: &[(&str, gst::glib::Value)]) -> gst_check::Harness {
    let element = gst::ElementFactory::make("detectblur").build().unwrap();
    for (name, value) in properties {
        element.set_property_from_value(name, value);
    }
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(caps.clone());
    h
}

#[test]
fn faces_are_masked_and_nothing_else_in_every_format() {
    init();
    let (x0, y0, w, h) = (16u32, 8u32, 32u32, 24u32);
    for format in ALL_FORMATS {
        let (frame, caps) = pattern_frame(format, 64, 48);
        let mut harness = blur(&caps, &[("block-size", 8u32.to_value())]);
        harness.push(with_box(&frame, "face", (x0, y0, w, h))).unwrap();
        let out = harness.pull().unwrap();
        let changed = changed_pixels(&frame, &out, &caps);
        assert!(
            changed.len() > 50,
            "{format}: only {} pixels changed",
            changed.len()
        );
        let outside: Vec<_> = changed
            .iter()
            .filter(|&&(x, y)| x < x0 || x >= x0 + w || y < y0 || y >= y0 + h)
            .collect();
        assert!(
            outside.is_empty(),
            "{format}: changed outside the box: {outside:?}"
        );

        // Another class, and no box at all: untouched, bit for bit.
        harness.push(with_box(&frame, "person", (x0, y0, w, h))).unwrap();
        harness.push(frame.clone()).unwrap();
        for _ in 0..2 {
            let out = harness.pull().unwrap();
            assert_eq!(
                out.map_readable().unwrap().as_slice(),
                frame.map_readable().unwrap().as_slice(),
                "{format}"
            );
        }
    }
}

#[test]
fn ellipses_leave_the_corners() {
    init();
    let (frame, caps) = pattern_frame("RGBx", 64, 48);
    let mut harness = blur(
        &caps,
        &[
            ("block-size", 4u32.to_value()),
            ("shape", gstasyncdetect::DetectBlurShape::Ellipse.to_value()),
        ],
    );
    harness.push(with_box(&frame, "face", (8, 8, 48, 32))).unwrap();
    let out = harness.pull().unwrap();
    let changed = changed_pixels(&frame, &out, &caps);
    for corner in [(8, 8), (55, 8), (8, 39), (55, 39)] {
        assert!(!changed.contains(&corner), "corner {corner:?} was masked");
    }
    assert!(!changed.is_empty());
}

/// The real chain: people found by asyncdetect are masked.
#[test]
fn masks_the_people_asyncdetect_found() {
    init();
    let (frame, caps) = photo_frame("I420", 640, 424);
    let chain =
        gst::parse::bin_from_description("asyncdetect mode=sync ! detectblur classes=person", true).unwrap();
    let mut h = gst_check::Harness::with_element(&chain, Some("sink"), Some("src"));
    h.set_src_caps(caps.clone());
    h.push(timestamped(&frame, 0)).unwrap();
    let out = h.pull().unwrap();
    let people: Vec<Roi> = rois(&out).into_iter().filter(|r| r.label == "person").collect();
    assert!(!people.is_empty());
    let changed = changed_pixels(&frame, &out, &caps);
    assert!(changed.len() > 1000, "the person was not masked");
    let inside_a_person = |&(x, y): &(u32, u32)| {
        people
            .iter()
            .any(|p| x >= p.rect.0 && x < p.rect.0 + p.rect.2 && y >= p.rect.1 && y < p.rect.1 + p.rect.3)
    };
    assert!(
        changed.iter().all(inside_a_person),
        "pixels changed outside the people"
    );
}
