//! Changing the model, the threshold and the class filter while PLAYING: each takes effect without
//! holding up or dropping a frame; a model that cannot be used leaves the running one in place
//! with a warning.
//!
//! "Without holding up" is judged against the slow model's own inference time as the element
//! measures it in the same run: a streaming thread that waited for a load or an inference would
//! leave a gap of about that long between two buffers, so the gaps must stay below one frame
//! (33 ms) plus half an inference, whatever the machine's speed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

#[derive(Default)]
struct Seen {
    frames: u64,
    last: Option<Instant>,
    worst_gap: Duration,
    labels: Vec<Vec<String>>,
}

/// Waits until a frame's labels satisfy `check` (frames from before the call are ignored). The
/// deadline only catches a hang.
fn wait_until(seen: &Arc<Mutex<Seen>>, what: &str, check: impl Fn(&[String]) -> bool) {
    let start = seen.lock().unwrap().labels.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if seen.lock().unwrap().labels[start..].iter().any(|l| check(l)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never saw {what}");
}

#[test]
fn settings_and_models_change_while_playing() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=I420,width=640,height=424 ! \
         imagefreeze is-live=true ! video/x-raw,framerate=30/1 ! asyncdetect name=detect threshold=0.3 threads=1 ! \
         fakesink name=sink sync=true",
        data_path("data/person.jpg").display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let detect = pipeline.by_name("detect").unwrap();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let recorder = seen.clone();
    let sink = pipeline.by_name("sink").unwrap();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let mut seen = recorder.lock().unwrap();
            seen.frames += 1;
            let now = Instant::now();
            if let Some(last) = seen.last.replace(now) {
                seen.worst_gap = seen.worst_gap.max(now - last);
            }
            if let Some(buffer) = info.buffer() {
                let labels = rois(buffer).into_iter().map(|r| r.label).collect();
                seen.labels.push(labels);
            }
            gst::PadProbeReturn::Ok
        });
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();

    wait_until(&seen, "the person and an animal", |l| {
        l.contains(&"person".into()) && l.len() >= 2
    });
    detect.set_property("labels", "person");
    wait_until(&seen, "only the person", |l| l == ["person"]);
    detect.set_property("labels", "");
    detect.set_property("threshold", 1.0f64);
    wait_until(&seen, "nothing at threshold 1", |l| l.is_empty());
    detect.set_property("threshold", 0.5f64);

    // A different model, swapped in while frames keep flowing.
    detect.set_property(
        "model-location",
        data_path("models/slow_ssd.onnx").display().to_string(),
    );
    wait_until(&seen, "the slow model's class 0", |l| l == ["0"]);
    let slow_model_latency = Duration::from_nanos(detect.property::<u64>("inference-latency"));

    // Models that cannot be used: warnings, and the slow model keeps running.
    detect.set_property("model-location", "/nonexistent/model.onnx");
    detect.set_property(
        "model-location",
        data_path("models/bad_outputs.onnx").display().to_string(),
    );
    let mut warnings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while warnings.len() < 2 && Instant::now() < deadline {
        if let Some(message) =
            bus.timed_pop_filtered(gst::ClockTime::from_mseconds(100), &[gst::MessageType::Warning])
            && let gst::MessageView::Warning(w) = message.view()
        {
            warnings.push(w.error().to_string());
        }
    }
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("/nonexistent/model.onnx") && warnings[0].contains("Keeping"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("bad_outputs.onnx") && warnings[1].contains("Keeping"),
        "{warnings:?}"
    );
    wait_until(&seen, "the slow model still", |l| l == ["0"]);

    // Back to the built-in model.
    detect.set_property("model-location", None::<String>);
    wait_until(&seen, "the person again", |l| l.contains(&"person".into()));

    let frames_in: u64 = detect.property("frames-in");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(bus.pop_filtered(&[gst::MessageType::Error]).is_none(), "no error");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.frames, frames_in, "every frame that entered came out");
    assert!(
        seen.worst_gap < Duration::from_millis(33) + slow_model_latency / 2,
        "the video waited {:?} (one inference of the slow model: {slow_model_latency:?})",
        seen.worst_gap
    );
}
