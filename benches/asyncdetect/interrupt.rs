//! Table 13: a flushing seek and a stop while an inference is under way.

use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::Config;
use crate::pipelines::*;
use crate::report::*;

/// A flushing seek and a stop while the element runs a model whose run on any frame but a black
/// one never ends by itself (tests/models/endless_ssd.onnx): each returns only if the run is
/// interrupted, and how long it takes is the interruption's cost. Both modes: in sync mode the
/// streaming thread itself is waiting for that run.
pub fn table_interrupt(config: &Config) {
    let trials = if config.full { 10 } else { 2 };
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models/endless_ssd.onnx");
    println!("\n## 13. Flushing seek and stop while an inference is under way ({trials} trials each, ms)\n");
    println!("320x240 test pattern at 30 fps into a model whose run never ends by itself: the seek and");
    println!("the stop return only by interrupting it.\n");
    println!("| mode | seek p50 | seek max | stop p50 | stop max |");
    println!("|---|---|---|---|---|");
    for mode in ["async", "sync"] {
        let mut seeks = Vec::new();
        let mut stops = Vec::new();
        for _ in 0..trials {
            let pipeline = parse_pipeline(&format!(
                "videotestsrc pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
                 asyncdetect name=detect mode={mode} threads=1 model-location={} ! fakesink sync=true",
                model.display()
            ));
            let detect = pipeline.by_name("detect").expect("asyncdetect");
            let _ = pipeline.set_state(gst::State::Playing);
            // Loaded (its warm-up run on a black frame timed) and a frame arrived: the idle model
            // takes it at once; give its run time to start. (A load itself is not interrupted.)
            let deadline = Instant::now() + Duration::from_secs(120);
            let ready =
                || detect.property::<u64>("inference-latency") > 0 && detect.property::<u64>("frames-in") > 0;
            while !ready() {
                assert!(Instant::now() < deadline, "the model never loaded");
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(200));
            let started = Instant::now();
            let _ = pipeline.seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::ZERO);
            seeks.push(started.elapsed());
            std::thread::sleep(Duration::from_millis(200));
            let started = Instant::now();
            pipeline.set_state(gst::State::Null).expect("stops");
            stops.push(started.elapsed());
            assert_eq!(
                detect.property::<u64>("frames-inferred"),
                0,
                "no run ended by itself"
            );
        }
        seeks.sort();
        stops.sort();
        println!(
            "| {mode} | {} | {} | {} | {} |",
            ms(percentile(&seeks, 0.5)),
            ms(percentile(&seeks, 1.0)),
            ms(percentile(&stops, 0.5)),
            ms(percentile(&stops, 1.0))
        );
        for (what, times) in [("flushing seek", &seeks), ("stop", &stops)] {
            let max = percentile(times, 1.0);
            goal(
                format!(
                    "{mode}: {what} during an inference took at most {} ms, under 100 ms",
                    ms(max)
                ),
                max < Duration::from_millis(100),
            );
        }
    }
}
