//! `detectoverlay` draws exactly where the metas say, in every format, and leaves frames without
//! metas bit-identical. Pixels are read back with GStreamer's own component description, not the
//! element's drawing code.

mod common;

use common::*;
use gst::prelude::*;
use gst_video::prelude::*;

const FORMATS: [&str; 19] = [
    "I420", "YV12", "NV12", "NV21", "Y42B", "Y444", "YUY2", "UYVY", "RGB", "BGR", "RGBA", "BGRA", "ARGB",
    "ABGR", "RGBx", "BGRx", "xRGB", "xBGR", "GRAY8",
];

/// A solid grey-blue frame in `format`, made by GStreamer.
fn solid_frame(format: &str, width: u32, height: u32) -> (gst::Buffer, gst::Caps) {
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
fn component(frame: &gst_video::VideoFrame<gst_video::video_frame::Readable>, c: u32, x: u32, y: u32) -> u8 {
    let info = frame.format_info();
    let data = frame.comp_data(c).unwrap();
    let (xs, ys) = (x >> info.w_sub()[c as usize], y >> info.h_sub()[c as usize]);
    let index = ys as usize * frame.comp_stride(c) as usize + xs as usize * frame.comp_pstride(c) as usize;
    // comp_data() already starts at the component's offset within the pixel group.
    data[index]
}

/// The pixels whose main components (Y, or R/G/B) differ between two frames.
fn changed_pixels(before: &gst::Buffer, after: &gst::Buffer, caps: &gst::Caps) -> Vec<(u32, u32)> {
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
    for format in FORMATS {
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
    for format in FORMATS {
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
