//! A wrong ONNX Runtime library path gives a clear error. Its own test binary (process): ONNX
//! Runtime is loaded once per process, and here it must never have been loaded before.

mod common;

use common::*;
use gst::prelude::*;

#[test]
fn wrong_library_path_is_reported_and_a_correct_one_then_works() {
    init();
    let run = |library: &str| {
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
             asyncdetect name=d mode=sync onnxruntime-library={library} ! fakesink sync=true"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let bus = pipeline.bus().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let message = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            )
            .expect("error or EOS");
        let outcome = match message.view() {
            gst::MessageView::Error(e) => Err(e.error().to_string()),
            _ => Ok(pipeline.by_name("d").unwrap().property::<u64>("frames-inferred")),
        };
        pipeline.set_state(gst::State::Null).unwrap();
        outcome
    };
    let error = run("/nonexistent/libonnxruntime.so").expect_err("a missing library is an error");
    assert!(error.contains("/nonexistent/libonnxruntime.so"), "{error}");
    assert!(error.contains("ONNX Runtime"), "{error}");

    let not_a_library = data_path("data/README.md");
    let error = run(&not_a_library.display().to_string()).expect_err("a text file is no library");
    assert!(error.contains("README.md"), "{error}");

    // A FIFO (or a device) would block the loader: refused by name, at once.
    let fifo = TempPath::fifo("libonnxruntime.fifo");
    let error = run(&fifo.display().to_string()).expect_err("a FIFO is no library");
    assert!(
        error.contains("libonnxruntime.fifo") && error.contains("not a regular file"),
        "{error}"
    );

    // The failure is not remembered: the system library (from scripts/setup.sh) then loads.
    let inferred = run("libonnxruntime.so").expect("the installed library works");
    assert_eq!(inferred, 30, "sync mode runs the model on every frame");
}
