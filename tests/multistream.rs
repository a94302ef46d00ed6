//! Many streams on one model: one shared session, each stream gets only its own results, batches
//! where the model takes them, and fair turns where it does not.

mod common;

use common::*;
use gst::prelude::*;

struct Stream {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    detect: gst::Element,
}

/// A live 30 fps stream of `description` frames through a detector with `properties`.
fn live_stream(source: &str, detector_properties: &str) -> Stream {
    let (pipeline, sink) = playing_with_appsink(&format!(
        "{source} ! asyncdetect name=detect post-messages=false {detector_properties} ! \
         appsink name=sink sync=false max-buffers=1 drop=true"
    ));
    let detect = pipeline.by_name("detect").expect("detector");
    Stream {
        pipeline,
        sink,
        detect,
    }
}

/// Each stream's inference count is within 20 % of the mean.
fn assert_fair(counts: &[u64]) {
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    assert!(mean > 5.0, "too few inferences to judge: {counts:?}");
    for &count in counts {
        let off = (count as f64 - mean).abs() / mean;
        assert!(off <= 0.2, "unfair: {counts:?} (mean {mean:.1})");
    }
}

/// Eight live streams of different grey levels share one session of a model that takes any
/// batch size and scores each image by its brightness: every stream gets exactly its own score,
/// frames were batched, and every stream got its share.
#[test]
fn batched_streams_each_get_their_own_results() {
    init();
    let model = data_path("models/batch_brightness.onnx").display().to_string();
    let greys: Vec<u32> = (0..8).map(|i| 40 + 25 * i).collect();
    let streams: Vec<Stream> = greys
        .iter()
        .map(|grey| {
            live_stream(
                &format!(
                    "videotestsrc is-live=true pattern=solid-color foreground-color={} ! \
                     video/x-raw,format=RGB,width=64,height=64,framerate=30/1",
                    0xff00_0000u32 | (grey * 0x01_0101)
                ),
                &format!("model-location={model} model-instance-id=batch-test threshold=0.05"),
            )
        })
        .collect();
    let start = std::time::Instant::now();
    let mut seen = vec![0usize; streams.len()];
    while start.elapsed() < std::time::Duration::from_secs(4) {
        for (index, stream) in streams.iter().enumerate() {
            let Some(sample) = stream.sink.try_pull_sample(gst::ClockTime::from_mseconds(5)) else {
                continue;
            };
            for roi in rois(sample.buffer().unwrap()) {
                let expected = greys[index] as f64 / 255.0;
                assert!(
                    (roi.confidence - expected).abs() < 0.01,
                    "stream {index} (grey {}) got score {}: another stream's result",
                    greys[index],
                    roi.confidence
                );
                seen[index] += 1;
            }
        }
    }
    let detect = &streams[0].detect;
    let users = detect.property::<u32>("session-users");
    let runs = detect.property::<u64>("session-runs");
    let frames = detect.property::<u64>("session-frames");
    let counts: Vec<u64> = streams
        .iter()
        .map(|s| s.detect.property::<u64>("frames-inferred"))
        .collect();
    for stream in &streams {
        stream.pipeline.set_state(gst::State::Null).unwrap();
    }
    println!("session users {users}, runs {runs}, frames {frames}, per stream {counts:?}, checked {seen:?}");
    assert_eq!(users, 8);
    assert!(seen.iter().all(|&n| n > 10), "every stream got results: {seen:?}");
    assert!(frames > runs, "frames of several streams were run together");
    assert_fair(&counts);
}

/// With a model of fixed batch size 1 (the built-in SSD), four busy streams take turns on one
/// session: their inference counts stay within 20 % of each other. A fifth element naming another
/// instance id gets a session of its own.
#[test]
fn streams_take_fair_turns_on_one_session() {
    init();
    let streams: Vec<Stream> = (0..4)
        .map(|i| {
            live_stream(
                &format!(
                    "videotestsrc is-live=true pattern=ball background-color={} ! \
                     video/x-raw,format=I420,width=320,height=240,framerate=30/1",
                    0xff20_2020u32 + i * 0x10_1010
                ),
                "model-instance-id=fair-test threads=1",
            )
        })
        .collect();
    let alone = live_stream(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1",
        "model-instance-id=other-test threads=1",
    );
    std::thread::sleep(std::time::Duration::from_secs(5));
    let counts: Vec<u64> = streams
        .iter()
        .map(|s| s.detect.property::<u64>("frames-inferred"))
        .collect();
    let users = streams[0].detect.property::<u32>("session-users");
    let (runs, frames) = (
        streams[0].detect.property::<u64>("session-runs"),
        streams[0].detect.property::<u64>("session-frames"),
    );
    let alone_users = alone.detect.property::<u32>("session-users");
    let delivered: Vec<bool> = streams
        .iter()
        .map(|s| s.sink.try_pull_sample(gst::ClockTime::from_seconds(1)).is_some())
        .collect();
    for stream in streams.iter().chain([&alone]) {
        stream.pipeline.set_state(gst::State::Null).unwrap();
    }
    println!("per stream {counts:?}, runs {runs}, frames {frames}");
    assert_eq!(users, 4);
    assert_eq!(alone_users, 1);
    assert_eq!(runs, frames, "a fixed batch of 1 is never batched");
    assert!(delivered.iter().all(|d| *d));
    assert_fair(&counts);
}

/// Two live cameras on one shared session of the built-in model, one seeing the person's half of
/// the photo and one the horse's: each finds its own object and never the other's.
#[test]
fn two_cameras_share_a_session_and_keep_their_own_results() {
    init();
    let photo = data_path("data/person.jpg").display().to_string();
    let streams: Vec<(Stream, &str, &str)> = [(0, "person", "horse"), (320, "horse", "person")]
        .into_iter()
        .map(|(left, own, other)| {
            let stream = live_stream(
                &format!(
                    "filesrc location={photo} ! jpegdec ! videoconvert ! videocrop left={left} right={} ! \
                     imagefreeze is-live=true ! video/x-raw,framerate=30/1",
                    320 - left
                ),
                "model-instance-id=two-cameras threshold=0.5",
            );
            (stream, own, other)
        })
        .collect();
    let mut checked = [0usize; 2];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        for (index, (stream, own, other)) in streams.iter().enumerate() {
            let Some(sample) = stream.sink.try_pull_sample(gst::ClockTime::from_mseconds(20)) else {
                continue;
            };
            let labels: Vec<String> = rois(sample.buffer().unwrap())
                .into_iter()
                .map(|r| r.label)
                .collect();
            if labels.is_empty() {
                continue;
            }
            assert!(labels.iter().any(|l| l == own), "stream {index}: {labels:?}");
            assert!(
                !labels.iter().any(|l| l == other),
                "{other} crossed into stream {index}"
            );
            checked[index] += 1;
        }
    }
    let users = streams[0].0.detect.property::<u32>("session-users");
    for (stream, _, _) in &streams {
        stream.pipeline.set_state(gst::State::Null).unwrap();
    }
    assert_eq!(users, 2);
    assert!(checked.iter().all(|&n| n > 10), "{checked:?}");
}
