//! Goals and the figures' formatting.

use std::time::Duration;

/// Goals checked in a full run; any miss makes the program exit non-zero.
pub static GOALS: std::sync::Mutex<Vec<(String, bool)>> = std::sync::Mutex::new(Vec::new());

pub fn goal(name: String, met: bool) {
    GOALS.lock().unwrap().push((name, met));
}

/// Runs this benchmark again as a child process with `variable=spec` in its environment and
/// returns the `key=value` fields of the line it printed starting with `tag` (children measure
/// in a process of their own, so one table's threads and memory do not skew another's).
pub fn child_report(variable: &str, spec: &str, tag: &str) -> Option<Vec<(String, String)>> {
    let output = std::process::Command::new(std::env::current_exe().ok()?)
        .env(variable, spec)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with(tag))?;
    line.split_whitespace()
        .skip(1)
        .map(|field| {
            let (key, value) = field.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

/// A field's comma-separated numbers.
pub fn numbers(value: &str) -> Vec<f64> {
    value.split(',').filter_map(|v| v.parse::<f64>().ok()).collect()
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// The lowest and highest of `values` after dropping the lowest and highest tenth: the spread
/// of one turn's ratio, to show how much a single short comparison could mislead.
pub fn spread(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let cut = values.len() / 10;
    match (
        values.get(cut),
        values.len().checked_sub(cut + 1).and_then(|i| values.get(i)),
    ) {
        (Some(low), Some(high)) => format!("{low:.2}-{high:.2}"),
        _ => "-".into(),
    }
}
