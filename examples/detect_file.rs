//! Runs the built-in detector over a video file and prints what it finds as it goes.
//!
//!     cargo run --release --example detect_file -- target/media/bikes.mp4 [--fast] [asyncdetect properties...]
//!
//! By default the file plays in real time, like a camera; `--fast` decodes as fast as the machine
//! can. Extra arguments such as `threshold=0.6` or `labels=person,car` are set on `asyncdetect`.

use std::collections::BTreeMap;

use gst::prelude::*;

fn main() {
    if let Err(error) = run() {
        eprintln!("detect_file: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: detect_file <video file> [--fast] [property=value ...]")?;
    let mut realtime = true;
    let mut properties = Vec::new();
    for arg in args {
        if arg == "--fast" {
            realtime = false;
        } else {
            properties.push(arg);
        }
    }

    gst::init().map_err(|e| e.to_string())?;
    gstasyncdetect::plugin_register_static().map_err(|e| e.to_string())?;
    let pipeline = gst::parse::launch(&format!(
        "filesrc name=source ! decodebin ! videoconvert ! asyncdetect name=detect {} ! fakesink sync={realtime}",
        properties.join(" ")
    ))
    .map_err(|e| format!("cannot build the pipeline: {e}"))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let source = pipeline.by_name("source").ok_or("no filesrc")?;
    source.set_property("location", &path);
    let detect = pipeline.by_name("detect").ok_or("no asyncdetect")?;
    let detect_src = detect.static_pad("src").ok_or("no src pad")?;

    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| format!("cannot play {path}: see the error below"))
        .or_else(|e| first_error(&pipeline).map_or(Err(e), Err))?;
    println!(
        "Detecting objects in {path} ({})",
        if realtime {
            "real time"
        } else {
            "as fast as possible"
        }
    );

    let bus = pipeline.bus().ok_or("no bus")?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut outcome = Ok(());
    for message in bus.iter_timed(gst::ClockTime::NONE) {
        match message.view() {
            gst::MessageView::Element(element) => {
                let Some(s) = element.structure().filter(|s| s.name() == "asyncdetect") else {
                    continue;
                };
                let size = detect_src
                    .current_caps()
                    .and_then(|caps| gst_video::VideoInfo::from_caps(&caps).ok())
                    .map(|info| (info.width() as f64, info.height() as f64))
                    .unwrap_or((1.0, 1.0));
                let at = s.get::<u64>("timestamp").map(gst::ClockTime::from_nseconds).ok();
                let latency = s.get::<u64>("inference-latency").unwrap_or(0) as f64 / 1e6;
                let detections = s.get::<gst::List>("detections").map_err(|e| e.to_string())?;
                let mut line = Vec::new();
                for detection in detections.iter() {
                    let Ok(d) = detection.get::<gst::Structure>() else {
                        continue;
                    };
                    let label = d.get::<String>("label").unwrap_or_default();
                    let confidence = d.get::<f64>("confidence").unwrap_or(0.0);
                    let coordinate = |f: &str, scale: f64| (d.get::<f64>(f).unwrap_or(0.0) * scale).round();
                    line.push(format!(
                        "{label} {:.0}% ({},{})-({},{})",
                        confidence * 100.0,
                        coordinate("x_min", size.0),
                        coordinate("y_min", size.1),
                        coordinate("x_max", size.0),
                        coordinate("y_max", size.1)
                    ));
                    *seen.entry(label).or_default() += 1;
                }
                if !line.is_empty() {
                    println!(
                        "{:>12}  [{latency:5.1} ms]  {}",
                        at.map(|t| t.to_string()).unwrap_or_default(),
                        line.join(", ")
                    );
                }
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                outcome = Err(format!("{} ({})", e.error(), e.debug().unwrap_or_default()));
                break;
            }
            _ => (),
        }
    }
    let frames: u64 = detect.property("frames-in");
    let inferred: u64 = detect.property("frames-inferred");
    let latency_ms = detect.property::<u64>("inference-latency") as f64 / 1e6;
    pipeline.set_state(gst::State::Null).map_err(|e| e.to_string())?;
    outcome?;
    println!("\n{frames} frames passed, {inferred} inferred ({latency_ms:.1} ms each, smoothed)");
    println!("Detections per class: {seen:?}");
    Ok(())
}

fn first_error(pipeline: &gst::Pipeline) -> Option<String> {
    let message = pipeline
        .bus()?
        .timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])?;
    match message.view() {
        gst::MessageView::Error(e) => Some(e.error().to_string()),
        _ => None,
    }
}
