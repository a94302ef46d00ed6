//! Goals and the figures' formatting.

use std::time::Duration;

/// Goals checked in a full run; any miss makes the program exit non-zero.
pub static GOALS: std::sync::Mutex<Vec<(String, bool)>> = std::sync::Mutex::new(Vec::new());

pub fn goal(name: String, met: bool) {
    GOALS.lock().unwrap().push((name, met));
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
