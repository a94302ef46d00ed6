//! `execution-provider`: the CPU runs the model as by default; a provider the loaded ONNX Runtime
//! was not built with fails the start with an error naming it and what the library has.

mod common;

use common::*;
use gstasyncdetect::engine::{Accelerator, available_accelerators};

/// 30 test frames through `asyncdetect execution-provider=NICK` in sync mode.
fn run(provider: &str) -> Result<u64, String> {
    sync_run(&format!("execution-provider={provider}"))
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
