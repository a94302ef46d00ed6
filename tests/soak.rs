//! Long runs. Ignored by default: `bash scripts/bench.sh` does not run them either; run with
//!
//!     cargo test --release --test soak -- --ignored --nocapture
//!
//! `SOAK_SECONDS` sets the length (default 1800: 30 minutes).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// 1080p30 in real time (a clock-synchronised sink) through the three elements for SOAK_SECONDS,
/// with a caps change and a flushing seek every minute: every frame comes out, memory stays flat.
#[test]
#[ignore]
fn half_an_hour_of_real_time_video() {
    init();
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800);
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=I420,width=1920,height=1080 ! \
         imagefreeze ! video/x-raw,framerate=30/1 ! videoconvert ! videoscale ! \
         capsfilter name=filter caps=video/x-raw,format=I420,width=1920,height=1080 ! \
         asyncdetect name=detect post-messages=false ! detectexport location=/dev/null ! detectoverlay ! \
         fakesink name=sink sync=true",
        data_path("data/person.jpg").display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let frames = Arc::new(Mutex::new(0u64));
    let counted = frames.clone();
    pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            *counted.lock().unwrap() += 1;
            gst::PadProbeReturn::Ok
        });
    let (filter, detect) = (
        pipeline.by_name("filter").unwrap(),
        pipeline.by_name("detect").unwrap(),
    );
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let start = Instant::now();
    let mut memory = Vec::new();
    let mut flushed_frames = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        while let Some(message) = bus.pop() {
            if let gst::MessageView::Error(e) = message.view() {
                panic!("error after {:?}: {}", start.elapsed(), e.error());
            }
        }
        memory.push(resident_kib());
        let second = memory.len();
        if second % 60 == 20 {
            let (format, width, height) = if second / 60 % 2 == 0 {
                ("BGRx", 1280, 720)
            } else {
                ("I420", 1920, 1080)
            };
            filter.set_property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("format", format)
                    .field("width", width)
                    .field("height", height)
                    .build(),
            );
        }
        if second % 60 == 40 {
            let before: u64 = detect.property("frames-in");
            pipeline
                .seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::ZERO)
                .unwrap();
            flushed_frames += detect.property::<u64>("frames-in").saturating_sub(before);
        }
    }
    let frames_in: u64 = detect.property("frames-in");
    pipeline.set_state(gst::State::Null).unwrap();
    let out = *frames.lock().unwrap();
    let first_minute = memory.get(59).or(memory.first()).copied().unwrap_or(0);
    let growth = memory.last().copied().unwrap_or(0) as i64 - first_minute as i64;
    println!(
        "{seconds} s: {frames_in} frames in, {out} out, memory growth {growth} KiB after the first minute"
    );
    // A flushing seek may discard the frame in flight; nothing else may be lost.
    assert!(
        frames_in - out <= flushed_frames + 2 * (seconds / 60 + 1),
        "{frames_in} in, {out} out"
    );
    assert!(growth < 5 * 1024, "memory grew by {growth} KiB");
}

/// Eight detectors in one process, each on its own picture: each finds what is in its own frames,
/// and they share one ONNX Runtime session (one copy of the weights).
#[test]
fn eight_pipelines_in_one_process() {
    init();
    let crops = [(0.0, "person"), (0.5, "horse")];
    let mut pipelines = Vec::new();
    for i in 0..8 {
        // Even pipelines see the left half of the photo (the person), odd ones the right (the horse).
        let (left, expected) = crops[i % 2];
        let width = 640;
        let crop_left = (left * width as f64) as u32;
        let (pipeline, sink) = playing_with_appsink(&format!(
            "filesrc location={} ! jpegdec ! videoconvert ! videocrop left={crop_left} right={} ! \
             imagefreeze num-buffers=20 ! video/x-raw,framerate=30/1 ! asyncdetect name=detect mode=sync threshold=0.5 ! \
             appsink name=sink sync=false",
            data_path("data/person.jpg").display(),
            width / 2 - crop_left
        ));
        pipelines.push((pipeline, sink, expected));
    }
    // Once every one has a frame out, all have loaded the built-in model with the same settings:
    // one session, one copy of the weights.
    let firsts: Vec<gst::Sample> = pipelines
        .iter()
        .map(|(_, sink, _)| sink.pull_sample().unwrap())
        .collect();
    for ((pipeline, _, _), first) in pipelines.iter().zip(&firsts) {
        assert!(!rois(first.buffer().unwrap()).is_empty());
        assert_eq!(
            pipeline
                .by_name("detect")
                .unwrap()
                .property::<u32>("session-users"),
            8
        );
    }
    for (pipeline, sink, expected) in &pipelines {
        let mut frames = 1;
        while let Ok(sample) = sink.pull_sample() {
            let labels: Vec<String> = rois(sample.buffer().unwrap())
                .into_iter()
                .map(|r| r.label)
                .collect();
            assert!(
                labels.contains(&expected.to_string()),
                "expected {expected}, got {labels:?}"
            );
            let other = if *expected == "person" { "horse" } else { "person" };
            assert!(
                !labels.contains(&other.to_string()),
                "{other} leaked into a {expected} stream: {labels:?}"
            );
            frames += 1;
        }
        assert_eq!(frames, 20);
        pipeline.set_state(gst::State::Null).unwrap();
    }
}
