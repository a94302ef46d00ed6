//! A video file in; an annotated video, a JSON Lines file and a running log out.
//!
//!     cargo run --release --example detect_file -- INPUT [--output annotated.mp4] [--json detections.jsonl]
//!                                                  [--realtime] [asyncdetect-property=value ...]
//!
//! By default the file is processed as fast as the machine allows with `mode=sync`, so every frame
//! of the annotated video carries its own boxes. `--realtime` plays it at its own pace in the
//! default async mode, as a camera would be: the video never waits for the model.
//! Extra arguments such as `threshold=0.6` or `labels=person,car` are set on `asyncdetect`.

mod shared;

use std::io::Write;
use std::time::{Duration, Instant};

use gst::prelude::*;

struct Options {
    input: String,
    output: String,
    json: String,
    realtime: bool,
    properties: Vec<String>,
}

fn parse_args() -> Result<Options, String> {
    let usage =
        "usage: detect_file INPUT [--output FILE.mp4] [--json FILE.jsonl] [--realtime] [property=value ...]";
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        input: String::new(),
        output: "annotated.mp4".into(),
        json: "detections.jsonl".into(),
        realtime: false,
        properties: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--output" => options.output = args.next().ok_or(usage)?,
            "--json" => options.json = args.next().ok_or(usage)?,
            "--realtime" => options.realtime = true,
            "--fast" => options.realtime = false,
            "-h" | "--help" => return Err(usage.into()),
            other if other.contains('=') => options.properties.push(other.to_string()),
            other if options.input.is_empty() => options.input = other.to_string(),
            other => return Err(format!("unexpected argument {other}\n{usage}")),
        }
    }
    if options.input.is_empty() {
        return Err(usage.into());
    }
    Ok(options)
}

fn main() {
    if let Err(error) = run() {
        eprintln!("detect_file: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let options = parse_args()?;
    gst::init().map_err(|e| e.to_string())?;
    gstasyncdetect::plugin_register_static().map_err(|e| e.to_string())?;

    let mode = if options.realtime { "async" } else { "sync" };
    let pipeline = gst::parse::launch(&format!(
        "filesrc name=source ! decodebin ! videoconvert ! asyncdetect name=detect mode={mode} {} ! \
         detectexport name=export ! detectoverlay ! videoconvert ! openh264enc bitrate=2000000 ! h264parse ! \
         mp4mux ! filesink name=sink sync={}",
        options.properties.join(" "),
        options.realtime
    ))
    .map_err(|e| format!("cannot build the pipeline: {e}"))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let element = |name: &str| pipeline.by_name(name).ok_or(format!("no element {name}"));
    element("source")?.set_property("location", &options.input);
    element("export")?.set_property("location", &options.json);
    element("sink")?.set_property("location", &options.output);
    let detect = element("detect")?;
    let detect_src = detect.static_pad("src").ok_or("no src pad")?;

    pipeline.set_state(gst::State::Playing).map_err(|_| {
        let bus = pipeline.bus();
        let reason = bus
            .and_then(|b| b.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error]))
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            });
        format!(
            "cannot play {}: {}",
            options.input,
            reason.unwrap_or_else(|| "unknown error".into())
        )
    })?;
    println!(
        "{} -> {} + {} ({mode} mode)",
        options.input, options.output, options.json
    );

    let bus = pipeline.bus().ok_or("no bus")?;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut outcome = Ok(());
    loop {
        let message = bus.timed_pop(gst::ClockTime::from_mseconds(250));
        if last_progress.elapsed() >= Duration::from_millis(500) {
            last_progress = Instant::now();
            print_progress(&pipeline, &detect);
        }
        let Some(message) = message else { continue };
        match message.view() {
            gst::MessageView::Element(m) => {
                let Some((timestamp, found)) = m.structure().and_then(shared::result_of) else {
                    continue;
                };
                if found.is_empty() {
                    continue;
                }
                println!("{}", shared::log_line(Some(&detect_src), timestamp, &found));
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
    let written: u64 = element("export")?.property("written");
    pipeline.set_state(gst::State::Null).map_err(|e| e.to_string())?;
    outcome?;
    println!(
        "done in {:.1} s: {frames} frames, {inferred} inferred, {written} JSON lines; wrote {} and {}",
        started.elapsed().as_secs_f64(),
        options.output,
        options.json
    );
    Ok(())
}

fn print_progress(pipeline: &gst::Pipeline, detect: &gst::Element) {
    let position = pipeline.query_position::<gst::ClockTime>();
    let duration = pipeline.query_duration::<gst::ClockTime>();
    let percent = match (position, duration) {
        (Some(p), Some(d)) if d > gst::ClockTime::ZERO => {
            format!("{:3.0}%", 100.0 * p.seconds_f64() / d.seconds_f64())
        }
        _ => "  ?%".into(),
    };
    println!(
        "progress {percent}  {} frames, {} inferred, {:.1} inferences/s",
        detect.property::<u64>("frames-in"),
        detect.property::<u64>("frames-inferred"),
        detect.property::<f64>("inference-fps")
    );
    let _ = std::io::stdout().flush();
}
