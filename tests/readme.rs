//! The README's figures and sample output are what the benchmark run and the programs give:
//! `scripts/readme_figures.py --check` compares each figure with BENCHMARKS.md and runs the demo,
//! a gst-launch-1.0 one-liner and the Python example again (this build of them).

mod common;

use common::*;

#[test]
fn readme_figures_and_samples_are_up_to_date() {
    init();
    let plugin = built("libgstasyncdetect.so", &["--lib"]);
    let demo = built("examples/detect_file", &["--example", "detect_file"]);
    demo_clip();
    let output = std::process::Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/readme_figures.py"))
        .arg("--check")
        .env(
            "ASYNCDETECT_PLUGIN_DIR",
            plugin.parent().expect("plugin directory"),
        )
        .env("ASYNCDETECT_DETECT_FILE", &demo)
        .output()
        .expect("/usr/bin/python3 runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
