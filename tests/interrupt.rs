//! Stop, flush and model change while an inference runs: none of them waits for the model to
//! finish the frame. The model here (`tests/models/endless_ssd.onnx`) never finishes a frame that
//! is not all black, so a test passes only if the run is interrupted, on any machine; the
//! deadlines only catch a hang.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::glib;
use gst::prelude::*;

fn pipeline(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// `tests/models/endless_ssd.onnx`: a run on any frame that is not all black never ends by
/// itself (it returns at once on black frames, such as the element's warm-up).
fn endless_model() -> String {
    data_path("models/endless_ssd.onnx").display().to_string()
}

/// Ends the test process with a failure: an element stuck in a run that never ends cannot be
/// stopped, so unwinding (which stops the harness or the pipeline) would hang too.
fn hung(what: &str) -> ! {
    eprintln!("FAILED: {what} waited for an inference that never ends");
    std::process::exit(1);
}

/// Runs `f` on another thread; fails if it has not returned within `seconds`. Only a hang runs
/// into this: an interrupted inference ends within milliseconds, an uninterrupted one never.
fn within<T: Send + 'static>(seconds: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    finished_within(seconds, f).unwrap_or_else(|| hung(what))
}

/// Stopping while a run that never ends is under way, in both modes: the stop interrupts it
/// instead of waiting for it (so it returns at all), no inference ever completed, and the
/// threads are joined.
#[test]
fn stopping_interrupts_a_running_inference() {
    init();
    for mode in ["async", "sync"] {
        let p = pipeline(&format!(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
             asyncdetect name=d mode={mode} threads=1 model-location={} ! fakesink",
            endless_model()
        ));
        p.set_state(gst::State::Playing).unwrap();
        let detect = p.by_name("d").unwrap();
        // A frame reached the element: in sync mode its inference starts at once; in async mode
        // the idle model takes it at once.
        let deadline = Instant::now() + Duration::from_secs(120);
        while detect.property::<u64>("frames-in") < 1 {
            assert!(Instant::now() < deadline, "{mode}: no frame arrived");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        let stopping = p.clone();
        within(60, &format!("{mode}: stopping"), move || {
            stopping.set_state(gst::State::Null).unwrap()
        });
        assert_eq!(
            detect.property::<u64>("frames-inferred"),
            0,
            "{mode}: no run ended by itself"
        );
    }
}

/// Stopping while the model is still loading, in both modes: building an ONNX Runtime session
/// cannot be interrupted, and `tests/models/slow_loading_ssd.onnx` takes seconds to build on any
/// machine. The stop stops waiting for that build (it finishes on its own thread and is dropped)
/// instead of waiting for it: had the stop waited, the build would have delivered its session
/// and none would count as abandoned. (Counts are process-wide: another test's load abandoned
/// at the same moment could only make this pass, never fail.)
#[test]
fn stopping_does_not_wait_for_a_model_load() {
    use gstasyncdetect::abandonable::{abandoned, started};
    init();
    let model = data_path("models/slow_loading_ssd.onnx").display().to_string();
    for mode in ["async", "sync"] {
        let (started_before, abandoned_before) = (started(), abandoned());
        let p = pipeline(&format!(
            "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! \
             asyncdetect name=d mode={mode} threads=1 model-location={model} ! fakesink"
        ));
        let starting = p.clone();
        within(60, &format!("{mode}: starting"), move || {
            starting.set_state(gst::State::Playing).unwrap()
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while started() == started_before {
            assert!(Instant::now() < deadline, "{mode}: the load never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        let stopping = p.clone();
        within(60, &format!("{mode}: stopping during the load"), move || {
            stopping.set_state(gst::State::Null).unwrap()
        });
        assert!(
            abandoned() > abandoned_before,
            "{mode}: the stop waited for the load to finish"
        );
        let detect = p.by_name("d").unwrap();
        assert_eq!(detect.property::<u32>("session-users"), 0, "{mode}: never loaded");
    }
}

/// A frame bright enough to start a run that never ends.
fn bright_frame(index: u64) -> gst::Buffer {
    timestamped(
        &gst::Buffer::from_mut_slice(vec![200u8; 320 * 240 * 3 / 2]),
        index,
    )
}

/// A black frame: the same model answers it at once.
fn black_frame(index: u64) -> gst::Buffer {
    let mut data = vec![0u8; 320 * 240 * 3 / 2];
    // I420 black: Y 0, chroma neutral... which the model sees as RGB 0 only with Y 16; the
    // converter maps Y 0 and neutral chroma to black.
    data[320 * 240..].fill(128);
    timestamped(&gst::Buffer::from_mut_slice(data), index)
}

fn i420_caps() -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", 320)
        .field("height", 240)
        .field("framerate", gst::Fraction::new(30, 1))
        .build()
}

/// A detector's properties: the endless model on one thread, then `more`.
fn endless_detector<'a>(more: &[(&'a str, glib::Value)]) -> Vec<(&'a str, glib::Value)> {
    let mut properties = vec![
        ("model-location", endless_model().to_value()),
        ("threads", 1u32.to_value()),
    ];
    properties.extend(more.iter().cloned());
    properties
}

/// An async-mode detector with the endless model (and `more` properties), its bus, and a bright
/// frame pushed: the idle model takes it at once, and its run is under way when this returns.
fn busy_with_a_run_that_never_ends(
    more: &[(&str, glib::Value)],
) -> (gst_check::Harness, gst::Bus, gst::Element) {
    let (mut h, bus, detect) = harness_with_bus(&endless_detector(more), &i420_caps());
    h.push(bright_frame(0)).unwrap();
    h.pull().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    (h, bus, detect)
}

/// The `timestamp` of the next result message on `bus`, waiting at most `seconds`.
fn next_result(bus: &gst::Bus, seconds: u64) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(left.as_nanos() as u64),
            &[gst::MessageType::Element],
        )?;
        if let Some(s) = message.structure()
            && s.name() == "asyncdetect"
        {
            return s.get::<u64>("timestamp").ok();
        }
    }
}

/// A flush (what a flushing seek sends) while a run that never ends is under way, in async mode:
/// the run is interrupted, so the frames after the flush get results (they could not, were the
/// model still busy with the frame from before it).
#[test]
fn a_flush_interrupts_the_running_inference() {
    init();
    let (mut h, bus, detect) = busy_with_a_run_that_never_ends(&[]);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    h.push_event(gst::event::Segment::new(
        &gst::FormattedSegment::<gst::ClockTime>::new(),
    ));
    for index in 1..=3 {
        h.push(black_frame(index)).unwrap();
        h.pull().unwrap();
    }
    let timestamp = next_result(&bus, 60).unwrap_or_else(|| hung("the first frame after the flush"));
    assert!(
        timestamp >= 33_000_000,
        "a frame from after the flush was inferred: {timestamp}"
    );
    assert!(detect.property::<u64>("frames-inferred") >= 1);
}

/// The same in sync mode: a flush releases the buffer waiting for its never-ending result, and
/// the next frame is answered instead of waiting behind that run (the re-preroll after a seek).
#[test]
fn a_flush_in_sync_mode_does_not_wait_for_the_running_inference() {
    init();
    let sync = [("mode", gstasyncdetect::AsyncDetectMode::Sync.to_value())];
    let (mut h, _bus, _detect) = harness_with_bus(&endless_detector(&sync), &i420_caps());
    // One black frame first: caps, segment and the model are in place.
    h.push(black_frame(0)).unwrap();
    h.pull().unwrap();
    let srcpad = h.srcpad().expect("the harness's source pad");
    let (pushed, waiting) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = pushed.send(srcpad.push(bright_frame(1)));
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(h.push_event(gst::event::FlushStart::new()));
    let released = waiting
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| hung("the buffer waiting when the flush came"));
    assert_eq!(released, Err(gst::FlowError::Flushing));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    h.push_event(gst::event::Segment::new(
        &gst::FormattedSegment::<gst::ClockTime>::new(),
    ));
    let srcpad = h.srcpad().expect("the harness's source pad");
    let answered = within(60, "the frame after the flush", move || {
        srcpad.push(black_frame(2))
    });
    assert_eq!(answered, Ok(gst::FlowSuccess::Ok));
}

/// Changing the model while a run that never ends is under way: the run is interrupted and the
/// new model (the built-in one) answers the next frames.
#[test]
fn a_model_change_interrupts_the_running_inference() {
    init();
    let (mut h, bus, detect) = busy_with_a_run_that_never_ends(&[]);
    detect.set_property("model-location", None::<String>);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut index = 1;
    let timestamp = loop {
        if Instant::now() > deadline {
            hung("the model change");
        }
        h.push(bright_frame(index)).unwrap();
        h.pull().unwrap();
        index += 1;
        // Each frame waits up to a second for a result, then the next is pushed.
        if let Some(timestamp) = next_result(&bus, 1) {
            break timestamp;
        }
    };
    assert!(
        timestamp >= 33_000_000,
        "answered a frame from after the change: {timestamp}"
    );
}

/// Another element's run that never ends holds up no one else's model: an element joining the
/// same model instance loads (it needs no warm-up of its own, and reads the model's inputs and
/// outputs without the busy session) and gets results on a lane of its own, and an element
/// loading another model meanwhile is not held up by a process-wide lock either.
#[test]
fn loading_never_waits_for_another_elements_inference() {
    init();
    let instance = [
        ("model-instance-id", "endless-shared".to_value()),
        ("session-lanes", 2u32.to_value()),
    ];
    let (busy, _busy_bus, _) = busy_with_a_run_that_never_ends(&instance);
    let (mut joining, joining_bus, joining_element) =
        harness_with_bus(&endless_detector(&instance), &i420_caps());
    joining.push(black_frame(0)).unwrap();
    joining.pull().unwrap();
    if next_result(&joining_bus, 120).is_none() {
        hung("an element joining a busy model instance");
    }
    assert_eq!(joining_element.property::<u32>("session-users"), 2);

    let (mut other, other_bus, _) = harness_with_bus(&[("threads", 1u32.to_value())], &i420_caps());
    other.push(black_frame(0)).unwrap();
    other.pull().unwrap();
    if next_result(&other_bus, 120).is_none() {
        hung("an element loading another model");
    }
    // Stopping the busy element interrupts its run.
    within(60, "stopping the busy element", move || drop(busy));
}
