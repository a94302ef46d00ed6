//! Table 9: against the blocking recipe (Python appsink + ONNX Runtime per frame).

use crate::Config;
use crate::live::live_run;
use crate::report::*;

/// Runs the Python appsink + onnxruntime recipe; `None` when its environment is missing.
pub fn python_recipe(model: &std::path::Path, fps: u32, seconds: f64) -> Option<(f64, f64)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/bench-venv/bin/python");
    let output = std::process::Command::new(&python)
        .arg(root.join("benches/blocking_recipe.py"))
        .arg(model)
        .arg(fps.to_string())
        .arg(seconds.to_string())
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len() + 3..];
        rest.split([',', '}']).next()?.trim().parse().ok()
    };
    Some((value("delivered_fps")?, value("detection_fps")?))
}

pub fn table_recipe(config: &Config) {
    let seconds = if config.full { 30.0 } else { 2.0 };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    println!(
        "\n## 9. Against the blocking recipe (Python appsink + onnxruntime per frame), live 1080p ({seconds} s each)\n"
    );
    println!(
        "| model | source | recipe: video fps | recipe: detections/s | asyncdetect: video fps | asyncdetect: detections/s |"
    );
    println!("|---|---|---|---|---|---|");
    let models = [
        (
            "SSD MobileNet v2 (built in)",
            root.join("models/ssd_mobilenet_v2_coco_quant.onnx"),
            String::new(),
        ),
        (
            "heavy stand-in: 61 convolutions (tests/models/slow_ssd.onnx)",
            root.join("tests/models/slow_ssd.onnx"),
            format!(
                "model-location={}",
                root.join("tests/models/slow_ssd.onnx").display()
            ),
        ),
    ];
    for (name, path, property) in models {
        for fps in [30, 60] {
            let recipe = python_recipe(&path, fps, seconds);
            let ours = live_run(&format!("asyncdetect {property}"), fps, seconds);
            let (recipe_video, recipe_detect) = recipe.map_or(
                ("n/a (run scripts/bench-env.sh)".to_string(), "n/a".to_string()),
                |(v, d)| (format!("{v:.1}"), format!("{d:.1}")),
            );
            println!(
                "| {name} | 1080p{fps} | {recipe_video} | {recipe_detect} | {:.1} | {:.1} |",
                ours.rendered as f64 / seconds,
                ours.inferred as f64 / seconds
            );
            if config.full {
                goal(
                    format!("recipe comparison ran for {name} at {fps} fps"),
                    recipe.is_some(),
                );
            }
        }
    }
}
