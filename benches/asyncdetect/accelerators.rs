//! Table 15: the OpenVINO execution provider against ONNX Runtime's CPU provider, both from the
//! same ONNX Runtime build (PyPI's onnxruntime-openvino, which `scripts/setup.sh` installs), on
//! the built-in model and a heavier one. ONNX Runtime is loaded once per process, so the table
//! runs in a child process that loads that build.

use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::Config;
use crate::pipelines::*;
use crate::report::*;

const PROVIDERS: [&str; 2] = ["cpu", "openvino"];

fn openvino_library() -> String {
    let dir =
        std::env::var("OV_ORT_DIR").unwrap_or_else(|_| "/usr/local/lib/onnxruntime-openvino-1.24.1".into());
    format!("{dir}/libonnxruntime.so.1.24.1")
}

/// The models compared: name, `model-location` (empty: the built-in one).
fn models() -> [(&'static str, String); 2] {
    let nanodet = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/nanodet_m_416.onnx");
    [
        ("SSD MobileNet v2, quantised (built in), 300x300", String::new()),
        ("NanoDet-m, float, 416x416", nanodet.display().to_string()),
    ]
}

/// One turn: `frames` frames of the demo clip through `asyncdetect mode=sync` (every frame
/// inferred); inferences per second from the first result to the end, so the model's load is
/// not counted.
fn turn(model: &str, provider: &str, frames: u32) -> Option<f64> {
    let location = if model.is_empty() {
        String::new()
    } else {
        format!("model-location={model}")
    };
    let pipeline = parse_pipeline(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! identity eos-after={} ! \
         asyncdetect mode=sync onnxruntime-library={} execution-provider={provider} {location} ! \
         fakesink name=sink sync=false",
        crate::common::demo_clip().display(),
        frames + 1,
        openvino_library()
    ));
    let sink = pipeline.by_name("sink")?;
    let first = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (seen, counted) = (first.clone(), count.clone());
    sink.static_pad("sink")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            seen.lock().unwrap().get_or_insert_with(Instant::now);
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    let bus = pipeline.bus()?;
    pipeline.set_state(gst::State::Playing).ok()?;
    let message = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(600),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let end = Instant::now();
    let _ = pipeline.set_state(gst::State::Null);
    if !matches!(message.as_ref().map(|m| m.view()), Some(gst::MessageView::Eos(_))) {
        return None;
    }
    let started = (*first.lock().unwrap())?;
    let after_first = count.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(1);
    Some(
        after_first as f64
            / end
                .duration_since(started)
                .max(Duration::from_millis(1))
                .as_secs_f64(),
    )
}

/// Child process: `ASYNCDETECT_ACCELERATORS=<cycles>;<frames>` prints one `ACCELERATORS` line per
/// model: the name and each provider's inferences/s per cycle.
pub fn accelerators_child(spec: &str) {
    let mut parts = spec.split(';');
    let cycles: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let frames: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    for (name, model) in models() {
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); PROVIDERS.len()];
        // The providers take turns, so the machine's drift falls on both alike.
        for _ in 0..cycles {
            for (index, provider) in PROVIDERS.iter().enumerate() {
                if let Some(rate) = turn(&model, provider, frames) {
                    rates[index].push(rate);
                }
            }
        }
        let text: Vec<String> = rates
            .iter()
            .map(|r| r.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(","))
            .collect();
        println!("ACCELERATORS {name}|{}", text.join("|"));
    }
}

pub fn table_accelerators(config: &Config) {
    let (cycles, frames) = if config.full { (5, 100) } else { (1, 5) };
    println!(
        "\n## 15. OpenVINO against ONNX Runtime's CPU provider ({cycles} cycles of {frames} frames each, taken in turn)\n"
    );
    if !std::path::Path::new(&openvino_library()).exists() {
        println!(
            "(skipped: {} is missing; `bash scripts/setup.sh` installs it)",
            openvino_library()
        );
        return;
    }
    println!(
        "The demo clip (640x272) through `asyncdetect mode=sync` (every frame inferred, default threads), both"
    );
    println!(
        "providers from ONNX Runtime 1.24.1 with OpenVINO (PyPI's onnxruntime-openvino); inferences/s from"
    );
    println!("the first result to the end of each turn, median of the turns.\n");
    let Some(output) = std::env::current_exe().ok().and_then(|exe| {
        std::process::Command::new(exe)
            .env("ASYNCDETECT_ACCELERATORS", format!("{cycles};{frames}"))
            .output()
            .ok()
    }) else {
        println!("(the child process did not run)");
        return;
    };
    println!(
        "| model | CPU provider (inferences/s) | OpenVINO (inferences/s) | OpenVINO / CPU | spread of the turns' ratios |"
    );
    println!("|---|---|---|---|---|");
    for line in String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("ACCELERATORS "))
    {
        let mut fields = line.split('|');
        let name = fields.next().unwrap_or("?");
        let rates: Vec<Vec<f64>> = fields
            .map(|f| f.split(',').filter_map(|v| v.parse().ok()).collect())
            .collect();
        let median = |values: &[f64]| {
            let mut sorted = values.to_vec();
            sorted.sort_by(f64::total_cmp);
            sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
        };
        let (cpu, openvino) = (
            median(rates.first().map_or(&[][..], |r| r)),
            median(rates.get(1).map_or(&[][..], |r| r)),
        );
        let mut ratios: Vec<f64> = rates
            .first()
            .into_iter()
            .flatten()
            .zip(rates.get(1).into_iter().flatten())
            .map(|(c, o)| o / c)
            .collect();
        println!(
            "| {name} | {cpu:.1} | {openvino:.1} | {:.2} | {} |",
            openvino / cpu.max(1e-9),
            spread(&mut ratios)
        );
    }
}
