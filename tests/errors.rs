//! Bad models, labels and settings give a clear error naming the problem; nothing panics or hangs.

mod common;

use common::*;
use gst::prelude::*;

fn temp_file(name: &str, contents: &[u8]) -> TempPath {
    TempPath::with_contents(name, contents)
}

/// Runs a short test-pattern pipeline with the detector configured by `properties` and returns the
/// error it posts (from the state change or the inference thread).
fn error_of(properties: &str) -> String {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=300 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         asyncdetect {properties} ! fakesink sync=true"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let bus = pipeline.bus().unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let error = wait_for_error(&bus, 30);
    pipeline.set_state(gst::State::Null).unwrap();
    error.unwrap_or_else(|| panic!("no error for `{properties}`"))
}

#[test]
fn missing_model_fails_the_state_change_and_names_the_file() {
    init();
    let pipeline =
        gst::parse::launch("videotestsrc ! asyncdetect model-location=/nonexistent/model.onnx ! fakesink")
            .unwrap();
    assert!(pipeline.set_state(gst::State::Playing).is_err());
    let error = wait_for_error(&pipeline.bus().unwrap(), 5).expect("an error message");
    assert!(error.contains("/nonexistent/model.onnx"), "{error}");
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn empty_and_corrupt_models_are_named() {
    init();
    let empty = temp_file("empty.onnx", b"");
    let error = error_of(&format!("model-location={}", empty.display()));
    assert!(
        error.contains(&empty.display().to_string()) && error.contains("empty"),
        "{error}"
    );

    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let garbage = temp_file("garbage.onnx", &noise);
    let error = error_of(&format!("model-location={}", garbage.display()));
    assert!(error.contains(&garbage.display().to_string()), "{error}");
    assert!(error.contains("ONNX"), "{error}");

    let directory = std::env::temp_dir();
    let error = error_of(&format!("model-location={}", directory.display()));
    assert!(error.contains("not a regular file"), "{error}");
}

#[test]
fn models_with_unusable_inputs_or_outputs_say_what_they_found() {
    init();
    let outputs = data_path("models/bad_outputs.onnx");
    let error = error_of(&format!("model-location={}", outputs.display()));
    assert!(error.contains("bad_outputs.onnx"), "{error}");
    assert!(
        error.contains("`features` [1, 10]") && error.contains("supported"),
        "{error}"
    );

    let input = data_path("models/bad_input.onnx");
    let error = error_of(&format!("model-location={}", input.display()));
    assert!(
        error.contains("bad_input.onnx") && error.contains("not an image"),
        "{error}"
    );
}

#[test]
fn sync_mode_with_a_broken_model_stops_with_an_error_instead_of_waiting() {
    init();
    let outputs = data_path("models/bad_outputs.onnx");
    let error = error_of(&format!("mode=sync model-location={}", outputs.display()));
    assert!(error.contains("bad_outputs.onnx"), "{error}");
}

#[test]
fn broken_labels_files_are_named() {
    init();
    let error = error_of("labels-location=/nonexistent/labels.txt");
    assert!(error.contains("/nonexistent/labels.txt"), "{error}");

    let binary = temp_file(
        "binary-labels.txt",
        &[0x7f, b'E', b'L', b'F', 0, 1, 2, 3, b'\n', 0xff, 0xfe],
    );
    let error = error_of(&format!("labels-location={}", binary.display()));
    assert!(error.contains(&binary.display().to_string()), "{error}");

    let duplicated = temp_file("dup-labels.txt", b"0 person\n0 car\n");
    let error = error_of(&format!("labels-location={}", duplicated.display()));
    assert!(error.contains("line 2") && error.contains("twice"), "{error}");

    let empty = temp_file("empty-labels.txt", b"\n\n");
    let error = error_of(&format!("labels-location={}", empty.display()));
    assert!(error.contains("no labels"), "{error}");
}

#[test]
fn invalid_input_normalisation_is_reported() {
    init();
    let error = error_of("input-mean=1,2");
    assert!(error.contains("input-mean"), "{error}");
    let error = error_of("input-std=0");
    assert!(error.contains("input-std"), "{error}");
}

#[test]
fn unsupported_caps_are_refused_at_negotiation() {
    init();
    let link = gst::parse::launch("audiotestsrc num-buffers=5 ! asyncdetect ! fakesink");
    let error = link.expect_err("audio cannot link").to_string();
    assert!(error.contains("could not link"), "{error}");

    let mut h = gst_check::Harness::new("asyncdetect");
    h.set_src_caps_str("video/x-raw,format=GRAY16_LE,width=8,height=8,framerate=30/1");
    let pushed = h.push(gst::Buffer::with_size(8 * 8 * 2).unwrap());
    assert_eq!(pushed, Err(gst::FlowError::NotNegotiated));
}

/// A buffer smaller than its caps claim passes through; the application gets one warning.
#[test]
fn short_buffers_pass_with_a_warning() {
    init();
    let element = detector(&[("mode", gstasyncdetect::AsyncDetectMode::Sync.to_value())]);
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str("video/x-raw,format=I420,width=320,height=240,framerate=30/1");
    for i in 0..3 {
        let buffer = timestamped(&gst::Buffer::from_mut_slice(vec![7u8; 100]), i);
        h.push(buffer)
            .expect("the short buffer is not an error for the stream");
        let out = h.pull().expect("and it comes out");
        assert_eq!(out.size(), 100);
        assert!(rois(&out).is_empty());
    }
    let warnings = warnings(&bus);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("100 bytes") && warnings[0].contains("320x240"),
        "{warnings:?}"
    );
}

/// A labels file with fewer names than the model has classes: detections of the unnamed classes
/// keep their id as label, and one warning names the file and the class.
#[test]
fn a_labels_file_with_too_few_names_is_reported() {
    init();
    let short = temp_file("short-labels.txt", b"0 person\n");
    let (frame, caps) = photo_frame("I420", 640, 424);
    let (mut h, bus, _element) = harness_with_bus(
        &[
            ("mode", gstasyncdetect::AsyncDetectMode::Sync.to_value()),
            ("labels-location", short.display().to_string().to_value()),
            ("threshold", 0.3f64.to_value()),
        ],
        &caps,
    );
    for i in 0..3 {
        h.push(timestamped(&frame, i)).unwrap();
        let labels: Vec<String> = rois(&h.pull().unwrap()).into_iter().map(|r| r.label).collect();
        assert!(
            labels.contains(&"person".to_string()) && labels.len() >= 2,
            "{labels:?}"
        );
        assert!(
            labels.iter().any(|l| l.parse::<i32>().is_ok()),
            "unnamed classes keep their id: {labels:?}"
        );
    }
    let warnings = warnings(&bus);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&short.display().to_string()) && warnings[0].contains("names 1 classes"),
        "{warnings:?}"
    );
}

/// An out-of-range value from gst-launch-1.0: GLib refuses it with a message naming the property;
/// the pipeline still runs with the default, nothing aborts.
#[test]
fn out_of_range_values_from_gst_launch_are_refused() {
    let output = gst_launch_with_plugin(&[
        "-q",
        "videotestsrc",
        "num-buffers=5",
        "!",
        "asyncdetect",
        "threshold=2",
        "!",
        "fakesink",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("threshold") && stderr.contains("out of range"),
        "{stderr}"
    );
    // The model input's documented bound (4096): beyond it, refused by name.
    let output = gst_launch_with_plugin(&[
        "-q",
        "videotestsrc",
        "num-buffers=5",
        "!",
        "asyncdetect",
        "input-width=16384",
        "!",
        "fakesink",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("input-width") && stderr.contains("out of range"),
        "{stderr}"
    );
}

/// The decoder can be forced; forcing one the model's outputs do not fit explains what was found.
#[test]
fn a_forced_decoder_that_does_not_fit_is_explained() {
    init();
    let error = error_of("decoder=yolo");
    assert!(error.contains("forced by the decoder property"), "{error}");
    assert!(
        error.contains("TFLite_Detection_PostProcess"),
        "lists the outputs found: {error}"
    );
    let (frame, caps) = photo_frame("I420", 320, 212);
    let mut h = harness(
        &[
            ("mode", gstasyncdetect::AsyncDetectMode::Sync.to_value()),
            ("decoder", gstasyncdetect::AsyncDetectDecoder::Ssd.to_value()),
        ],
        &caps,
    );
    h.push(timestamped(&frame, 0)).unwrap();
    assert!(
        rois(&h.pull().unwrap()).iter().any(|r| r.label == "person"),
        "forcing the right decoder works"
    );
}

/// Runs `gst-launch-1.0 ARGS` with this build of the plugin (in a child process: a regression that
/// aborts fails the test, not the test runner).
fn gst_launch_with_plugin(args: &[&str]) -> std::process::Output {
    let plugin = built("libgstasyncdetect.so", &["--lib"]);
    std::process::Command::new("gst-launch-1.0")
        .args(args)
        .env("GST_PLUGIN_PATH", plugin.parent().expect("plugin directory"))
        .env_remove("G_DEBUG")
        .output()
        .expect("gst-launch-1.0 runs")
}

/// Runs `f` on another thread; fails the test if it has not returned within `seconds` (a hang is
/// a failure here, not a stuck test run).
fn within<T: Send + 'static>(seconds: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    finished_within(seconds, f).unwrap_or_else(|| panic!("{what} hung"))
}

/// Labels "files" that are devices, FIFOs nobody writes or far too big are refused at once, by
/// name, before anything is read: `/dev/zero` used to be read until memory ran out and a FIFO
/// blocked the state change forever.
#[test]
fn labels_that_are_not_regular_text_files_are_refused_at_once() {
    init();
    let error = within(60, "labels-location=/dev/zero", || {
        error_of("labels-location=/dev/zero")
    });
    assert!(
        error.contains("/dev/zero") && error.contains("not a regular file"),
        "{error}"
    );

    let fifo = TempPath::fifo("labels.fifo");
    let location = format!("labels-location={}", fifo.display());
    let error = within(60, "a labels FIFO", move || error_of(&location));
    assert!(
        error.contains("labels.fifo") && error.contains("not a regular file"),
        "{error}"
    );

    let huge = TempPath::sparse("huge-labels.txt", 64 << 20);
    let error = error_of(&format!("labels-location={}", huge.display()));
    assert!(
        error.contains("huge-labels.txt") && error.contains("bytes"),
        "{error}"
    );

    // Set while PLAYING: refused with a warning at once, the running labels stay.
    let (frame, caps) = photo_frame("I420", 320, 212);
    let (mut h, bus, element) = harness_with_bus(
        &[("mode", gstasyncdetect::AsyncDetectMode::Sync.to_value())],
        &caps,
    );
    h.push(timestamped(&frame, 0)).unwrap();
    h.pull().unwrap();
    let setter = element.clone();
    within(60, "setting labels-location=/dev/zero while playing", move || {
        setter.set_property("labels-location", "/dev/zero")
    });
    h.push(timestamped(&frame, 1)).unwrap();
    let labels: Vec<String> = rois(&h.pull().unwrap()).into_iter().map(|r| r.label).collect();
    assert!(labels.contains(&"person".to_string()), "{labels:?}");
    let warnings = warnings(&bus);
    assert!(warnings.iter().any(|w| w.contains("/dev/zero")), "{warnings:?}");
}

/// Model files are checked before they are read: a 2 GiB sparse file is refused by its size
/// (ONNX files cannot be that big), a large file of zeros and other frameworks' formats by their
/// first bytes, with what to do.
#[test]
fn model_files_are_checked_before_they_are_read() {
    init();
    let two_gib = TempPath::sparse("two-gib.onnx", 2 << 30);
    let error = error_of(&format!("model-location={}", two_gib.display()));
    assert!(
        error.contains("two-gib.onnx") && error.contains("2147483648 bytes"),
        "{error}"
    );

    let zeros = TempPath::sparse("zeros.onnx", 256 << 20);
    let error = error_of(&format!("model-location={}", zeros.display()));
    assert!(error.contains("zeros.onnx") && error.contains("ONNX"), "{error}");

    let tflite = TempPath::with_contents("detector.tflite", b"\x1c\x00\x00\x00TFL3\x00\x00\x00\x00");
    let error = error_of(&format!("model-location={}", tflite.display()));
    assert!(
        error.contains("TensorFlow Lite") && error.contains("tf2onnx"),
        "{error}"
    );

    let fifo = TempPath::fifo("model.fifo");
    let location = format!("model-location={}", fifo.display());
    let error = within(60, "a model FIFO", move || error_of(&location));
    assert!(error.contains("not a regular file"), "{error}");
}

/// Caps the element cannot take (here 16-bit grey, as a decoder behind decodebin may give) end
/// upstream in a bare "not-negotiated"; the element says what it takes and what to put before
/// it, once.
#[test]
fn unsupported_caps_say_what_to_put_before_the_element() {
    init();
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "GRAY16_LE")
        .field("width", 64)
        .field("height", 48)
        .field("framerate", gst::Fraction::new(30, 1))
        .build();
    let (mut h, bus, _element) = harness_with_bus(&[], &caps);
    let frame = gst::Buffer::with_size(64 * 48 * 2).unwrap();
    assert_eq!(h.push(frame.clone()), Err(gst::FlowError::NotNegotiated));
    let _ = h.push(frame);
    let warnings = warnings(&bus);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("GRAY16_LE")
            && warnings[0].contains("videoconvert")
            && warnings[0].contains("NV12"),
        "{}",
        warnings[0]
    );
}

/// DL Streamer settings with no counterpart here make the element fail to start, saying what
/// to use instead: another device, a model-proc file.
#[test]
fn dl_streamer_settings_without_a_counterpart_fail_with_what_to_use() {
    for (setting, expected) in [
        ("device=GPU", "device=GPU is not available"),
        ("model-proc=ssd.json", "set decoder, channel-order"),
    ] {
        let output = gst_launch_with_plugin(&[
            "videotestsrc",
            "num-buffers=5",
            "!",
            "asyncdetect",
            setting,
            "!",
            "fakesink",
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            matches!(output.status.code(), Some(code) if code != 0),
            "{setting}: {text}"
        );
        assert!(text.contains(expected), "{setting}: {text}");
    }
}

/// gst-launch-1.0 sets properties before the element has a bus, so a refused value's warning went
/// nowhere and the pipeline ran without it. Now the element refuses to start and says why; a
/// valid value set afterwards clears the refusal.
#[test]
fn a_malformed_roi_from_gst_launch_fails_with_its_reason() {
    let output = gst_launch_with_plugin(&[
        "videotestsrc",
        "num-buffers=5",
        "!",
        "asyncdetect",
        "roi=left",
        "!",
        "fakesink",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // gst-launch-1.0 exits with 255 when the pipeline fails to start: an error exit, not a crash.
    assert!(
        matches!(output.status.code(), Some(code) if code != 0),
        "{:?} {stdout} {stderr}",
        output.status
    );
    assert!(
        format!("{stdout}{stderr}").contains("Invalid roi \"left\""),
        "{stdout} {stderr}"
    );

    init();
    let element = detector(&[("roi", "left".to_value())]);
    element.set_property("roi", "0.1,0.1,0.5,0.5");
    let pipeline = gst::Pipeline::new();
    let source = gst::ElementFactory::make("videotestsrc")
        .property("num-buffers", 2)
        .build()
        .unwrap();
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add_many([&source, &element, &sink]).unwrap();
    gst::Element::link_many([&source, &element, &sink]).unwrap();
    assert!(
        pipeline.set_state(gst::State::Paused).is_ok(),
        "a valid roi set afterwards clears the refusal"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

/// A model declaring a 100000x100000 input used to make the element allocate 30 GB and abort the
/// whole process. Run in a child process (gst-launch-1.0) so a regression fails this test rather
/// than killing the test runner: the pipeline must end with an error naming the size.
#[test]
fn a_model_declaring_a_huge_input_is_an_error_not_an_abort() {
    let model = format!("model-location={}", data_path("models/huge_input.onnx").display());
    let output = gst_launch_with_plugin(&[
        "videotestsrc",
        "num-buffers=30",
        "!",
        "asyncdetect",
        &model,
        "!",
        "fakesink",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "an error exit, not a crash: {:?} {stderr}",
        output.status
    );
    assert!(
        stderr.contains("huge_input.onnx") && stderr.contains("100000x100000"),
        "{stderr}"
    );
}

/// The same model swapped in while a pipeline plays: the running model keeps running (a warning
/// says why the new one was refused) and the process survives. The pipeline runs in a child
/// process: this test re-runs its own binary for `huge_model_swap_child`.
#[test]
fn a_huge_input_model_swapped_in_keeps_the_running_model() {
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "huge_model_swap_child", "--ignored", "--nocapture"])
        .env("ASYNCDETECT_CHILD", "1")
        .output()
        .expect("the child test runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child: {:?}\n{stdout}\n{stderr}",
        output.status
    );
}

#[test]
#[ignore = "run by a_huge_input_model_swapped_in_keeps_the_running_model in a child process"]
fn huge_model_swap_child() {
    assert!(
        std::env::var_os("ASYNCDETECT_CHILD").is_some(),
        "run through its parent test"
    );
    init();
    let (frame, caps) = photo_frame("I420", 320, 212);
    let (mut h, bus, element) = harness_with_bus(
        &[("mode", gstasyncdetect::AsyncDetectMode::Sync.to_value())],
        &caps,
    );
    h.push(timestamped(&frame, 0)).unwrap();
    h.pull().unwrap();
    element.set_property(
        "model-location",
        data_path("models/huge_input.onnx").display().to_string(),
    );
    // Sync mode: the next frames wait for whichever model runs; the built-in one still finds the
    // person once the swap has been refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut refused = Vec::new();
    while refused.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning about the huge model"
        );
        refused = warnings(&bus)
            .into_iter()
            .filter(|w| w.contains("huge_input.onnx"))
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        refused[0].contains("Keeping") && refused[0].contains("100000x100000"),
        "{refused:?}"
    );
    h.push(timestamped(&frame, 1)).unwrap();
    let labels: Vec<String> = rois(&h.pull().unwrap()).into_iter().map(|r| r.label).collect();
    assert!(labels.contains(&"person".to_string()), "{labels:?}");
}
