//! Measures, side by side in one run, what `asyncdetect` costs and delivers on this machine:
//!
//! 1. time a buffer spends inside the element on the streaming thread (sink pad to src pad) on
//!    real 1080p content with the model running, against `identity` beside it, per format;
//! 2. the element's inference rate against a plain ONNX Runtime loop on the same tensor, model and
//!    thread settings;
//! 3. pre-processing (colour conversion + scaling to the model input) per 1080p frame per format;
//! 4. what sharing a frame with the worker costs downstream against copying it;
//! 5. what `detectoverlay` costs per 1080p frame;
//! 6. to 12. pass-through throughput, live smoothness, freshness, the blocking Python recipe,
//!    memory over ten minutes, tracking, and many cameras (see BENCHMARKS.md);
//! 13. how long a flushing seek and a stop take while an inference is under way;
//! 14. events of 8 live cameras published to a loopback MQTT broker, up and then gone;
//! 15. the OpenVINO execution provider against the CPU provider;
//! 16. many cameras with the model on a loopback Triton Inference Server, and losing the server.
//!
//! Tables that compare rates (2 and 6) let their measurements take turns of a second or half a
//! second, cycle after cycle, pausing each pipeline between its turns: this shared machine's speed
//! drifts by several per cent over seconds, and separate runs of several seconds each moved their
//! ratios by ±0.03 from one run to the next.
//!
//! ```text
//! cargo bench --bench asyncdetect                # full run, prints markdown tables
//! cargo bench --bench asyncdetect -- preprocess  # only some: streaming, rate, preprocess, sharing, overlay, throughput, live, recipe, memory, tracking, cameras, interrupt, events, accelerators, remote
//! ```
//!
//! `cargo test --all-targets` runs a shortened variant (a few frames each) to keep it working; it
//! prints the same tables but its figures are not meaningful.

mod accelerators;
mod cadence;
mod cameras;
#[path = "../../tests/common/mod.rs"]
mod common;
mod events;
mod interrupt;
mod live;
mod memory;
mod overlay;
mod pipelines;
mod plain_loop;
mod preprocess;
mod rate;
mod recipe;
mod remote;
mod report;
mod sharing;
mod streaming;
mod throughput;
mod tracking;
mod turns;

use report::GOALS;

/// A table of the report.
type Table = fn(&Config);

pub struct Config {
    /// A full run (`cargo bench`); otherwise a few frames each, to keep the program working.
    pub full: bool,
}

fn main() {
    if let Ok(spec) = std::env::var("ASYNCDETECT_MEMORY") {
        gst::init().expect("GStreamer");
        gstasyncdetect::plugin_register_static().expect("plugin");
        memory::memory_child(&spec);
        return;
    }
    if let Ok(spec) = std::env::var("ASYNCDETECT_ACCELERATORS") {
        gst::init().expect("GStreamer");
        gstasyncdetect::plugin_register_static().expect("plugin");
        accelerators::accelerators_child(&spec);
        return;
    }
    if let Ok(spec) = std::env::var("ASYNCDETECT_REMOTE") {
        gst::init().expect("GStreamer");
        gstasyncdetect::plugin_register_static().expect("plugin");
        remote::remote_child(&spec);
        return;
    }
    if let Ok(spec) = std::env::var("ASYNCDETECT_CAMERAS") {
        gst::init().expect("GStreamer");
        gstasyncdetect::plugin_register_static().expect("plugin");
        cameras::cameras_child(&spec);
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` does not.
    let config = Config {
        full: std::env::args().any(|a| a == "--bench"),
    };
    gst::init().expect("GStreamer");
    gstasyncdetect::plugin_register_static().expect("plugin");
    println!(
        "# asyncdetect benchmark ({} run, {} cores)",
        if config.full {
            "full"
        } else {
            "short, figures not meaningful"
        },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    // Naming tables (`cargo bench --bench asyncdetect -- preprocess`) runs only those.
    let chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let tables: [(&str, Table); 15] = [
        ("streaming", streaming::table_streaming),
        ("rate", rate::table_inference_rate),
        ("preprocess", preprocess::table_preprocessing),
        ("sharing", sharing::table_sharing),
        ("overlay", overlay::table_overlay),
        ("throughput", throughput::table_throughput),
        ("live", live::table_live),
        ("recipe", recipe::table_recipe),
        ("memory", memory::table_memory),
        ("tracking", tracking::table_tracking),
        ("cameras", cameras::table_cameras),
        ("interrupt", interrupt::table_interrupt),
        ("events", events::table_events),
        ("accelerators", accelerators::table_accelerators),
        ("remote", remote::table_remote),
    ];
    for (name, table) in tables {
        if chosen.is_empty() || chosen.iter().any(|c| c == name) {
            table(&config);
        }
    }
    let goals = GOALS.lock().unwrap().clone();
    if !goals.is_empty() {
        println!("\n## Goals\n");
        for (name, met) in &goals {
            println!("- [{}] {name}", if *met { "x" } else { " " });
        }
    }
    let missed = goals.iter().filter(|(_, met)| !met).count();
    if config.full && missed > 0 {
        eprintln!("{missed} goal(s) missed");
        std::process::exit(1);
    }
}
