//! `execution-provider`: the CPU runs the model as by default; a provider the loaded ONNX Runtime
//! was not built with fails the start with an error naming it and what the library has.

mod common;

use common::*;
use gst::prelude::*;
use gstasyncdetect::engine::{Accelerator, available_accelerators};

/// Runs 30 test frames through `asyncdetect execution-provider=NICK` in sync mode: the frames
/// inferred, or the error.
fn run(provider: &str) -> Result<u64, String> {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         asyncdetect name=d mode=sync execution-provider={provider} ! fakesink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("error or EOS");
    let outcome = match message.view() {
        gst::MessageView::Error(e) => Err(e.error().to_string()),
        _ => Ok(pipeline.by_name("d").unwrap().property::<u64>("frames-inferred")),
    };
    pipeline.set_state(gst::State::Null).unwrap();
    outcome
}

#[test]
fn the_cpu_runs_and_a_missing_provider_is_named() {
    init();
    assert_eq!(
        run("cpu"),
        Ok(30),
        "the CPU provider runs every frame in sync mode"
    );
    let available = available_accelerators();
    assert!(available.contains(&Accelerator::Cpu));
    for (nick, accelerator) in [
        ("openvino", Accelerator::OpenVino),
        ("cuda", Accelerator::Cuda),
        ("tensorrt", Accelerator::TensorRt),
    ] {
        if available.contains(&accelerator) {
            // An ONNX Runtime with this provider: it is used (a GPU may still be missing).
            continue;
        }
        let error = run(nick).expect_err("a provider the library lacks fails the start");
        assert!(error.contains(&format!("execution-provider={nick}")), "{error}");
        assert!(error.contains(accelerator.name()), "{error}");
        assert!(error.contains("it has CPU"), "{error}");
        assert!(error.contains("onnxruntime"), "names the library: {error}");
    }
}
