//! The promise itself: with a slow model (`tests/models/slow_ssd.onnx`, see models/README.md for
//! its cost), a live 30 fps source through `asyncdetect` into a clock-synchronised sink delivers
//! every frame on time while detections still arrive. The same pipeline in sync mode is the
//! control: there frames fall ever further behind.
//!
//! "On time" is judged against the model's own inference time as the element measured it in the
//! same run: a streaming thread that waited for an inference even once would deliver that frame
//! late by about that much, on a fast machine or a slow one. Runs end on counts (frames, inferences),
//! not on a clock. Its own test binary, so no other test competes for the two cores while it measures.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;

/// Per buffer at the sink: how late it arrived, and whether it carried detections.
type Arrivals = Arc<Mutex<Vec<(gst::Signed<gst::ClockTime>, bool)>>>;

struct Delivery {
    frames: usize,
    frames_in: u64,
    with_detections: usize,
    /// Buffers without detections after the first that had them.
    lost_detections: usize,
    max_lateness: gst::Signed<gst::ClockTime>,
    inferred: u64,
    /// One inference of the model, as the element measured it.
    inference_latency: gst::ClockTime,
}

/// Plays live frames until at least `frames` have reached the sink and the model has run
/// `inferences` times, and measures, at the sink, how late each arrives against its running
/// time plus the pipeline latency.
fn deliver(mode: &str, frames: usize, inferences: u64) -> Delivery {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=ball ! \
         video/x-raw,width=320,height=240,framerate=30/1 ! \
         asyncdetect name=detect mode={mode} threads=1 model-location={} ! fakesink name=sink sync=true",
        data_path("models/slow_ssd.onnx").display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    let observations: Arrivals = Arc::default();
    let recorded = observations.clone();
    let weak_pipeline = pipeline.downgrade();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let (Some(buffer), Some(pipeline)) = (info.buffer(), weak_pipeline.upgrade()) else {
                return gst::PadProbeReturn::Ok;
            };
            let (Some(clock), Some(base)) = (pipeline.clock(), pipeline.base_time()) else {
                return gst::PadProbeReturn::Ok;
            };
            let segment = pad.sticky_event::<gst::event::Segment>(0).unwrap();
            let segment = segment
                .segment()
                .downcast_ref::<gst::ClockTime>()
                .unwrap()
                .clone();
            let running = segment.to_running_time(buffer.pts()).unwrap();
            let now = clock.time().checked_sub(base).unwrap_or_default();
            let due = running + pipeline.latency().unwrap_or_default();
            let lateness = now.into_positive() - due.into_positive();
            let has_detections = buffer.meta::<gst_video::VideoRegionOfInterestMeta>().is_some();
            recorded.lock().unwrap().push((lateness, has_detections));
            gst::PadProbeReturn::Ok
        });
    let bus = pipeline.bus().unwrap();
    let detect = pipeline.by_name("detect").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    // Only a hang runs into this deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while observations.lock().unwrap().len() < frames
        || detect.property::<u64>("frames-inferred") < inferences
    {
        assert!(std::time::Instant::now() < deadline, "{mode}: the stream stalled");
        if let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
            panic!("{mode}: {message:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    pipeline.send_event(gst::event::Eos::new());
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the pipeline ends");
    assert!(matches!(message.view(), gst::MessageView::Eos(_)), "{message:?}");
    let inferred = detect.property::<u64>("frames-inferred");
    let frames_in = detect.property::<u64>("frames-in");
    let inference_latency = gst::ClockTime::from_nseconds(detect.property::<u64>("inference-latency"));
    pipeline.set_state(gst::State::Null).unwrap();
    let observations = observations.lock().unwrap();
    let first_result = observations
        .iter()
        .position(|(_, d)| *d)
        .unwrap_or(observations.len());
    Delivery {
        frames: observations.len(),
        frames_in,
        with_detections: observations.iter().filter(|(_, d)| *d).count(),
        lost_detections: observations[first_result..].iter().filter(|(_, d)| !*d).count(),
        max_lateness: observations.iter().map(|(l, _)| *l).max().unwrap(),
        inferred,
        inference_latency,
    }
}

#[test]
fn a_slow_model_never_delays_a_live_stream() {
    init();
    let fast = deliver("async", 90, 3);
    let limit = (fast.inference_latency / 2).into_positive();
    println!(
        "async: {} frames, {} with detections, {} inferences of {}, worst lateness {}",
        fast.frames, fast.with_detections, fast.inferred, fast.inference_latency, fast.max_lateness
    );
    assert_eq!(fast.frames as u64, fast.frames_in, "every frame reaches the sink");
    assert!(
        fast.max_lateness < limit,
        "a frame was {} late (one inference: {})",
        fast.max_lateness,
        fast.inference_latency
    );
    assert!(fast.with_detections > 0, "detections arrive");
    assert_eq!(
        fast.lost_detections, 0,
        "once a result exists, every buffer carries it"
    );

    // Control: a filter that waits for the model (sync mode) makes the same stream fall behind,
    // so the measurement above can tell the two apart. It holds while one inference takes longer
    // than a 30 fps frame (33 ms).
    let blocking = deliver("sync", 20, 0);
    println!(
        "sync: {} frames, inferences of {}, worst lateness {}",
        blocking.frames, blocking.inference_latency, blocking.max_lateness
    );
    assert_eq!(blocking.frames as u64, blocking.frames_in);
    assert!(
        blocking.max_lateness > (blocking.inference_latency / 2).into_positive(),
        "sync mode was expected to fall behind"
    );
}
