//! State changes: 200 rapid start/stop cycles, pausing, and stopping while an inference runs. The
//! inference thread and its frame preparer are joined every time. Its own binary so the thread
//! count below is only ours.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// Thread names are cut to 15 bytes: `asyncdetect-infer` and `asyncdetect-prep`.
const WORKER_THREAD_NAMES: [&str; 2] = ["asyncdetect-inf", "asyncdetect-pre"];

fn inference_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| WORKER_THREAD_NAMES.contains(&name.trim()))
        .count()
}

/// Stopping joins the inference thread, its preparer and (dropping the model's session) ONNX
/// Runtime's pool threads. A thread that was just joined can still be listed in /proc for a
/// moment while the kernel finishes its exit, so wait for the count to reach 0; only a thread
/// really left running reaches the deadline.
fn assert_threads_end(what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while inference_threads() > 0 {
        assert!(
            Instant::now() < deadline,
            "{what}: an inference thread is still running"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Niceness and scheduling policy (fields 19 and 41 of /proc/<tid>/stat) of the preparer and of
/// every thread named after the inference thread, which includes the ONNX Runtime pool threads it
/// creates (they inherit the name).
fn inference_thread_priorities() -> Vec<(i64, i64)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            WORKER_THREAD_NAMES
                .iter()
                .any(|name| stat.contains(&format!("({name})")))
        })
        .filter_map(|stat| {
            let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
            Some((fields.get(16)?.parse().ok()?, fields.get(38)?.parse().ok()?))
        })
        .collect()
}

fn pipeline(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Waits until `detect` has run the model `count` times; the deadline only catches a hang.
fn wait_for_inferences(detect: &gst::Element, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while detect.property::<u64>("frames-inferred") < count {
        assert!(Instant::now() < deadline, "the model never ran {count} times");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn start_stop_cycles_and_stopping_mid_inference() {
    init();
    let cycles = pipeline("videotestsrc ! video/x-raw,width=640,height=480 ! asyncdetect name=d ! fakesink");
    for cycle in 0..200 {
        cycles.set_state(gst::State::Playing).unwrap();
        let (result, state, _) = cycles.state(gst::ClockTime::from_seconds(10));
        assert!(result.is_ok() && state == gst::State::Playing, "cycle {cycle}");
        std::thread::sleep(Duration::from_millis(3 * (cycle % 5)));
        if cycle % 3 == 0 {
            cycles.set_state(gst::State::Paused).unwrap();
            cycles.set_state(gst::State::Playing).unwrap();
        }
        cycles.set_state(gst::State::Null).unwrap();
        assert_threads_end(&format!("cycle {cycle}"));
    }
    // It still detects after all that.
    cycles.set_state(gst::State::Playing).unwrap();
    let detect = cycles.by_name("d").unwrap();
    wait_for_inferences(&detect, 1);
    // The inference thread, its preparer and the ONNX Runtime threads it started yield to the
    // video (default `inference-nice`: 19) and never preempt it on wake-up (SCHED_BATCH).
    let priorities = inference_thread_priorities();
    assert!(
        priorities.len() >= 2
            && priorities
                .iter()
                .all(|&p| p == (19, i64::from(libc::SCHED_BATCH))),
        "(nice, policy): {priorities:?}"
    );
    cycles.set_state(gst::State::Null).unwrap();

    // Stopping while the slow model runs, in both modes (tests/interrupt.rs stops a run that never
    // ends). The model is busy all the time (a frame waits whenever an inference ends), so after
    // the first result the next inference is under way. The limit only catches a stop that hangs.
    let slow = data_path("models/slow_ssd.onnx");
    for mode in ["async", "sync"] {
        let p = pipeline(&format!(
            "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! \
             asyncdetect name=d mode={mode} threads=1 model-location={} ! fakesink",
            slow.display()
        ));
        p.set_state(gst::State::Playing).unwrap();
        let detect = p.by_name("d").unwrap();
        wait_for_inferences(&detect, 1);
        std::thread::sleep(Duration::from_millis(50));
        let stopping = Instant::now();
        p.set_state(gst::State::Null).unwrap();
        let took = stopping.elapsed();
        assert!(took < Duration::from_secs(30), "{mode}: stopping took {took:?}");
        assert_threads_end(mode);
    }
}
