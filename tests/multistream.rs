//! Many streams on one model: one shared session, each stream gets only its own results, batches
//! where the model takes them, and fair turns where it does not.
//!
//! Nothing here is timed: fairness is judged by counting each stream's turns over a fixed number of
//! runs of the shared session, and every wait is for a count to be reached, with a deadline that
//! only catches a hang.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// Only a hang runs into this.
const HANG: Duration = Duration::from_secs(120);

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

fn inferred(streams: &[Stream]) -> Vec<u64> {
    streams
        .iter()
        .map(|s| s.detect.property::<u64>("frames-inferred"))
        .collect()
}

/// Once every stream has had a result, counts each stream's inferences until together they have
/// had `turns_each` per stream more, and checks that each got its turn: the shared queue serves
/// the oldest waiting frame first and a stream queues its next frame only after its own result.
/// A stream misses a turn now and then (its next frame not yet prepared when its turn comes, and
/// the counts are read one stream after the other), so each must get between half and one and a
/// half times the mean: a starved or a favoured stream fails that on any machine.
fn assert_fair_turns(streams: &[Stream], turns_each: u64) {
    let deadline = Instant::now() + HANG;
    while inferred(streams).contains(&0) {
        assert!(
            Instant::now() < deadline,
            "a stream never got a result: {:?}",
            inferred(streams)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = inferred(streams);
    let wanted = turns_each * streams.len() as u64;
    let turns = loop {
        let turns: Vec<u64> = inferred(streams)
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect();
        if turns.iter().sum::<u64>() >= wanted {
            break turns;
        }
        assert!(
            Instant::now() < deadline,
            "the session stopped running: {turns:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mean = turns.iter().sum::<u64>() as f64 / turns.len() as f64;
    let margin = mean * 0.5;
    println!("turns per stream {turns:?} (mean {mean:.1}, allowed +-{margin:.1})");
    for &count in &turns {
        assert!(
            (count as f64 - mean).abs() <= margin,
            "unfair: {turns:?} (mean {mean:.1})"
        );
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
    let deadline = Instant::now() + HANG;
    let mut seen = vec![0usize; streams.len()];
    while seen.iter().any(|&n| n <= 10) {
        assert!(Instant::now() < deadline, "results stopped arriving: {seen:?}");
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
    assert_fair_turns(&streams, 10);
    let detect = &streams[0].detect;
    let users = detect.property::<u32>("session-users");
    let runs = detect.property::<u64>("session-runs");
    let frames = detect.property::<u64>("session-frames");
    for stream in &streams {
        stream.pipeline.set_state(gst::State::Null).unwrap();
    }
    println!("session users {users}, runs {runs}, frames {frames}, checked {seen:?}");
    assert_eq!(users, 8);
    assert!(frames > runs, "frames of several streams were run together");
}

/// With a model of fixed batch size 1 (the built-in SSD), four busy streams take turns on one
/// session. A fifth element naming another instance id gets a session of its own.
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
    // Default threads and lanes: a single stream runs on one lane using every core.
    let alone = live_stream(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1",
        "model-instance-id=other-test",
    );
    assert_fair_turns(&streams, 20);
    let users = streams[0].detect.property::<u32>("session-users");
    let (runs, frames) = (
        streams[0].detect.property::<u64>("session-runs"),
        streams[0].detect.property::<u64>("session-frames"),
    );
    let alone_users = alone.detect.property::<u32>("session-users");
    let alone_lanes = alone.detect.property::<u32>("session-lanes-open");
    let delivered: Vec<bool> = streams
        .iter()
        .map(|s| s.sink.try_pull_sample(gst::ClockTime::from_seconds(30)).is_some())
        .collect();
    for stream in streams.iter().chain([&alone]) {
        stream.pipeline.set_state(gst::State::Null).unwrap();
    }
    println!("runs {runs}, frames {frames}");
    assert_eq!(users, 4);
    assert_eq!(alone_users, 1);
    assert_eq!(alone_lanes, 1, "one stream keeps the one wide lane");
    assert_eq!(runs, frames, "a fixed batch of 1 is never batched");
    assert!(delivered.iter().all(|d| *d));
}

/// Two live cameras on one shared session of the built-in model, one seeing the person's half of
/// the photo and one the horse's: each finds its own object and never the other's. With default
/// threads and lanes their frames run on lanes of their own beside the single-stream one.
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
    let deadline = Instant::now() + HANG;
    while checked.iter().any(|&n| n <= 10) {
        assert!(Instant::now() < deadline, "results stopped arriving: {checked:?}");
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
    let lanes = streams[0].0.detect.property::<u32>("session-lanes-open");
    for (stream, _, _) in &streams {
        stream.pipeline.set_state(gst::State::Null).unwrap();
    }
    assert_eq!(users, 2);
    assert!(lanes >= 2, "two streams opened a one-thread lane: {lanes} open");
}
