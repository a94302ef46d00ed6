//! Small helpers the examples share: reading `asyncdetect` result messages.
#![allow(dead_code)]

/// One detection from an `asyncdetect` bus message.
pub struct Found {
    pub label: String,
    pub confidence: f64,
    /// Normalised x_min, y_min, x_max, y_max.
    pub bbox: [f64; 4],
}

/// The analysed frame's timestamp and detections, if `structure` is an `asyncdetect` result.
pub fn result_of(structure: &gst::StructureRef) -> Option<(Option<gst::ClockTime>, Vec<Found>)> {
    if structure.name() != "asyncdetect" {
        return None;
    }
    let timestamp = structure
        .get::<u64>("timestamp")
        .ok()
        .map(gst::ClockTime::from_nseconds);
    let list = structure.get::<gst::List>("detections").ok()?;
    let found = list
        .iter()
        .filter_map(|value| value.get::<gst::Structure>().ok())
        .map(|d| Found {
            label: d.get::<String>("label").unwrap_or_default(),
            confidence: d.get::<f64>("confidence").unwrap_or(0.0),
            bbox: ["x_min", "y_min", "x_max", "y_max"].map(|f| d.get::<f64>(f).unwrap_or(0.0)),
        })
        .collect();
    Some((timestamp, found))
}

/// "person 87% (120,40)-(200,260), car 55% (...)" in pixels of a `width` x `height` frame.
pub fn describe(found: &[Found], width: u32, height: u32) -> String {
    found
        .iter()
        .map(|f| {
            let px = |v: f64, size: u32| (v * size as f64).round() as i64;
            format!(
                "{} {:.0}% ({},{})-({},{})",
                f.label,
                f.confidence * 100.0,
                px(f.bbox[0], width),
                px(f.bbox[1], height),
                px(f.bbox[2], width),
                px(f.bbox[3], height)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "person 87%, car 55%".
pub fn summary(found: &[Found]) -> String {
    found
        .iter()
        .map(|f| format!("{} {:.0}%", f.label, f.confidence * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One log line for a result: "  1.28s  person 79% (159,1)-(381,272), ..." in pixels of the frames
/// leaving `pad` (the detector's source pad).
pub fn log_line(pad: Option<&gst::Pad>, timestamp: Option<gst::ClockTime>, found: &[Found]) -> String {
    use gst::prelude::*;
    let (width, height) = pad
        .and_then(|pad| pad.current_caps())
        .and_then(|caps| gst_video::VideoInfo::from_caps(&caps).ok())
        .map_or((1, 1), |info| (info.width(), info.height()));
    let at = timestamp
        .map(|t| format!("{:.2}s", t.seconds_f64()))
        .unwrap_or_default();
    format!("{at:>8}  {}", describe(found, width, height))
}
