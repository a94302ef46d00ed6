//! The promise itself: with a model that takes ~200 ms per frame, a live 30 fps source through
//! `asyncdetect` into a clock-synchronised sink delivers every frame on time while detections still
//! arrive. The same pipeline in sync mode is the control: there frames fall ever further behind.
//!
//! Its own test binary, so no other test competes for the two cores while it measures.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;

/// Per buffer at the sink: how late it arrived, and whether it carried detections.
type Arrivals = Arc<Mutex<Vec<(gst::Signed<gst::ClockTime>, bool)>>>;

struct Delivery {
    frames: usize,
    with_detections: usize,
    max_lateness: gst::Signed<gst::ClockTime>,
    inferred: u64,
}

/// Plays `buffers` live frames and measures, at the sink, how late each arrives against its
/// running time plus the pipeline latency.
fn deliver(mode: &str, buffers: u32) -> Delivery {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers={buffers} pattern=ball ! \
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
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the pipeline ends");
    assert!(matches!(message.view(), gst::MessageView::Eos(_)), "{message:?}");
    let inferred = pipeline
        .by_name("detect")
        .unwrap()
        .property::<u64>("frames-inferred");
    pipeline.set_state(gst::State::Null).unwrap();
    let observations = observations.lock().unwrap();
    Delivery {
        frames: observations.len(),
        with_detections: observations.iter().filter(|(_, d)| *d).count(),
        max_lateness: observations.iter().map(|(l, _)| *l).max().unwrap(),
        inferred,
    }
}

#[test]
fn a_slow_model_never_delays_a_live_stream() {
    init();
    let limit = gst::ClockTime::from_mseconds(100).into_positive();
    let fast = deliver("async", 90);
    println!(
        "async: {} frames, {} with detections, {} inferences, worst lateness {}",
        fast.frames, fast.with_detections, fast.inferred, fast.max_lateness
    );
    assert_eq!(fast.frames, 90, "every frame reaches the sink");
    assert!(
        fast.max_lateness < limit,
        "a frame was {} late",
        fast.max_lateness
    );
    assert!(fast.inferred >= 3, "the model ran ({} times)", fast.inferred);
    assert!(
        fast.with_detections >= 30,
        "detections arrive ({} frames)",
        fast.with_detections
    );

    // Control: a filter that waits for the model (sync mode) makes the same stream fall behind,
    // so the measurement above can tell the two apart.
    let blocking = deliver("sync", 20);
    println!(
        "sync: {} frames, worst lateness {}",
        blocking.frames, blocking.max_lateness
    );
    assert_eq!(blocking.frames, 20);
    assert!(
        blocking.max_lateness > limit,
        "sync mode was expected to fall behind"
    );
}
