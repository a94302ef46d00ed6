//! A wrong ONNX Runtime library path gives a clear error. Its own test binary (process): ONNX
//! Runtime is loaded once per process, and here it must never have been loaded before.

mod common;

use common::*;

#[test]
fn wrong_library_path_is_reported_and_a_correct_one_then_works() {
    init();
    let run = |library: &str| sync_run(&format!("onnxruntime-library={library}"));
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
