//! `execution-provider=openvino` with the ONNX Runtime build that has it (PyPI's
//! onnxruntime-openvino, installed by `scripts/setup.sh`): on real frames it finds what the CPU
//! provider of the same library finds. Its own test binary (process): ONNX Runtime is loaded once
//! per process, and here it must be that build.

mod common;

use common::*;
use gst::prelude::*;
use gstasyncdetect::engine::{Accelerator, available_accelerators};

/// Where `scripts/setup.sh` installs it.
fn openvino_library() -> String {
    let dir =
        std::env::var("OV_ORT_DIR").unwrap_or_else(|_| "/usr/local/lib/onnxruntime-openvino-1.24.1".into());
    format!("{dir}/libonnxruntime.so.1.24.1")
}

/// Every frame's detections (label, confidence, normalised box) by timestamp, from the first 150 or so frames of the
/// demo clip, every frame inferred.
fn detections(provider: &str) -> std::collections::BTreeMap<u64, Vec<(String, f64, [f64; 4])>> {
    let (pipeline, sink) = playing_with_appsink(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! identity eos-after=150 ! \
         asyncdetect mode=sync threshold=0.3 onnxruntime-library={} execution-provider={provider} ! \
         appsink name=sink sync=false",
        demo_clip().display(),
        openvino_library()
    ));
    let mut frames = std::collections::BTreeMap::new();
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().expect("a buffer");
        frames.insert(
            buffer.pts().expect("a timestamp").nseconds(),
            rois(buffer)
                .into_iter()
                .map(|r| (r.label, r.confidence, r.norm))
                .collect(),
        );
    }
    let bus = pipeline.bus().expect("bus");
    let error = bus.pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).expect("stops");
    assert!(error.is_none(), "{error:?}");
    frames
}

#[test]
fn openvino_finds_what_the_cpu_finds() {
    init();
    let cpu = detections("cpu");
    assert!(
        available_accelerators().contains(&Accelerator::OpenVino),
        "{} has no OpenVINO execution provider: run scripts/setup.sh",
        openvino_library()
    );
    let openvino = detections("openvino");
    assert!(
        cpu.len() >= 40 && openvino.len() >= 40,
        "{} and {} frames",
        cpu.len(),
        openvino.len()
    );
    // Every clear detection of a real object on the CPU (the dark opening frames give a few
    // spurious ties and surfboards neither needs to agree on), looked for in OpenVINO's: the
    // built-in model is quantised (scores move in steps of about 0.08) and OpenVINO runs its
    // integer arithmetic its own way, so agreement is judged over the whole excerpt.
    let real =
        |d: &&(String, f64, [f64; 4])| d.1 >= 0.6 && ["person", "car", "bicycle"].contains(&d.0.as_str());
    let (mut compared, mut found) = (0, 0);
    let (mut overlaps, mut differences) = (Vec::new(), Vec::new());
    for (frame, by_cpu) in &cpu {
        let Some(by_openvino) = openvino.get(frame) else {
            continue;
        };
        for (label, confidence, bbox) in by_cpu.iter().filter(real) {
            compared += 1;
            let best = by_openvino
                .iter()
                .filter(|d| &d.0 == label)
                .map(|d| (iou(d.2, *bbox), d.1))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((overlap, other)) = best.filter(|(overlap, _)| *overlap > 0.5) {
                found += 1;
                overlaps.push(overlap);
                differences.push((other - confidence).abs());
            }
        }
    }
    assert!(compared > 20, "only {compared} clear detections compared");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    assert!(
        found as f64 >= 0.9 * compared as f64,
        "OpenVINO found {found} of the CPU's {compared} clear detections"
    );
    assert!(
        mean(&overlaps) > 0.85,
        "boxes overlap {:.3} on average",
        mean(&overlaps)
    );
    assert!(
        mean(&differences) < 0.1,
        "confidences differ by {:.3} on average",
        mean(&differences)
    );
    eprintln!(
        "OpenVINO against the CPU: {found} of {compared} clear detections, mean IoU {:.3}, mean confidence difference {:.3}",
        mean(&overlaps),
        mean(&differences)
    );
}
