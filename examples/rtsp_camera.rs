//! Surveillance cameras over RTSP: detections logged per camera, optionally an annotated
//! recording. A camera that drops or cannot be reached is retried with back-off (1 s doubling to
//! 30 s) and picked up again when it returns, without restarting the process; a connection that
//! stays open but delivers no video for 20 s counts as lost too. Ctrl-C (or SIGTERM)
//! sends EOS through every pipeline so recordings are finished cleanly.
//!
//!     cargo run --release --example rtsp_camera -- [--record DIR] [NAME=]rtsp://host/stream ... [property=value ...]
//!     cargo run --release --example rtsp_camera -- --config examples/cameras.toml [--record DIR]
//!
//! Each recording is `DIR/NAME-N.mkv` (Matroska stays playable even if a camera drops mid-file).
//! Extra `property=value` arguments are set on every `asyncdetect`. A config file (TOML) lists
//! cameras with a name, URL, region of interest, rates and any other `asyncdetect` property; its
//! `[detector]` table applies to every camera (see `examples/cameras.toml`). All cameras share one
//! model session in this process, with fair turns between them. A camera with `zones` or `lines`,
//! or any camera when the `[events]` table names an MQTT broker, gets a `detectevents` after its
//! detector: its events are printed, and published when a broker is set.

mod shared;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;

static STOP: AtomicBool = AtomicBool::new(false);

/// How long a connection may deliver no video before it counts as lost: a camera (or a server)
/// can keep the connection open and send nothing, which no error reports.
const STALL_TIMEOUT: Duration = Duration::from_secs(20);

extern "C" fn request_stop(_signal: libc::c_int) {
    // Only an atomic store: safe in a signal handler.
    STOP.store(true, Ordering::SeqCst);
}

/// `text` with every password in a `user:password@host` (a camera URL's credentials, whatever
/// its scheme, even mistyped) replaced by `***`: credentials must never reach the terminal, a
/// log or a file name.
fn redacted(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|piece| {
            let word = piece.trim_end_matches(char::is_whitespace);
            let Some(at) = word.rfind('@') else {
                return piece.to_string();
            };
            let start = word[..at].rfind('/').map_or(0, |slash| slash + 1);
            match word[start..at].find(':') {
                Some(colon) => format!("{}***{}", &word[..start + colon + 1], &piece[at..]),
                None => piece.to_string(),
            }
        })
        .collect()
}

/// Camera names become recording file names (`NAME-N.mkv`): letters, digits, `-`, `_` and `.`
/// only, not starting with `.`, so a name can neither leave the recording directory nor hide.
fn check_camera_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || name.starts_with('.') || !name.chars().all(allowed) {
        return Err(format!(
            "camera name `{}` may hold only letters, digits, '-', '_' and '.' (at most 64, not \
             starting with '.'): it names the recording files",
            redacted(name)
        ));
    }
    Ok(())
}

struct Camera {
    name: String,
    url: String,
    /// `property=value` settings for this camera's `asyncdetect`, after the common ones.
    properties: Vec<String>,
    /// `property=value` settings for this camera's `detectevents`, when it has one.
    events: Option<Vec<String>>,
}

/// The config file: common detector settings and the cameras.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    detector: toml::Table,
    /// `detectevents` properties for every camera with events (an MQTT broker, its topic...).
    #[serde(default)]
    events: toml::Table,
    #[serde(rename = "camera", default)]
    cameras: Vec<CameraConfig>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CameraConfig {
    name: String,
    url: String,
    roi: Option<String>,
    interval: Option<u32>,
    max_fps: Option<f64>,
    motion_gating: Option<bool>,
    /// Any other `asyncdetect` property for this camera.
    #[serde(default)]
    detector: toml::Table,
    /// Named zones and lines, written as `detectevents` takes them.
    zones: Option<String>,
    lines: Option<String>,
    /// Any other `detectevents` property for this camera.
    #[serde(default)]
    events: toml::Table,
}

/// A TOML value as the text GStreamer parses for a property.
fn property_text(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("{other} is not a property value")),
    }
}

fn table_properties(table: &toml::Table) -> Result<Vec<String>, String> {
    table
        .iter()
        .map(|(key, value)| Ok(format!("{key}={}", property_text(value)?)))
        .collect()
}

fn read_config(path: &str) -> Result<(Vec<Camera>, Vec<String>), String> {
    // A regular file of bounded size: a FIFO or a device would hang or exhaust the program.
    const MAX_CONFIG_BYTES: u64 = 1 << 20;
    let file = std::path::Path::new(path);
    let bytes = gstasyncdetect::files::read_regular_file(file, "config file", MAX_CONFIG_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8 text"))?;
    let config: ConfigFile = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    if config.cameras.is_empty() {
        return Err(format!("{path} lists no [[camera]]"));
    }
    let common = table_properties(&config.detector)?;
    let common_events = table_properties(&config.events)?;
    let cameras = config
        .cameras
        .into_iter()
        .map(|camera| {
            let mut properties = Vec::new();
            if let Some(roi) = camera.roi {
                properties.push(format!("roi={roi}"));
            }
            if let Some(interval) = camera.interval {
                properties.push(format!("interval={interval}"));
            }
            if let Some(max_fps) = camera.max_fps {
                properties.push(format!("max-fps={max_fps}"));
            }
            if let Some(gating) = camera.motion_gating {
                properties.push(format!("motion-gating={gating}"));
            }
            check_camera_name(&camera.name)?;
            let mut events = vec![format!("camera={}", camera.name)];
            events.extend(common_events.iter().cloned());
            if let Some(zones) = &camera.zones {
                events.push(format!("zones={zones}"));
            }
            if let Some(lines) = &camera.lines {
                events.push(format!("lines={lines}"));
            }
            events.extend(table_properties(&camera.events)?);
            let has_events = events.len() > 1;
            if has_events {
                // Events need tracked objects; the camera's own settings below may choose the mode.
                properties.insert(0, "tracking=iou".to_string());
            }
            properties.extend(table_properties(&camera.detector)?);
            Ok(Camera {
                name: camera.name,
                url: camera.url,
                properties,
                events: has_events.then_some(events),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((cameras, common))
}

struct Options {
    cameras: Vec<Camera>,
    record: Option<std::path::PathBuf>,
    properties: Vec<String>,
}

fn parse_args() -> Result<Options, String> {
    let usage = "usage: rtsp_camera [--record DIR] [NAME=]rtsp://... [...] [property=value ...]\n       \
                 rtsp_camera [--record DIR] --config cameras.toml [property=value ...]";
    let mut options = Options {
        cameras: Vec::new(),
        record: None,
        properties: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--record" {
            options.record = Some(args.next().ok_or(usage)?.into());
        } else if arg == "--config" {
            let (cameras, common) = read_config(&args.next().ok_or(usage)?)?;
            options.cameras.extend(cameras);
            options.properties.extend(common);
        } else if let Some(at) = arg.find("rtsp://") {
            let name = arg[..at].trim_end_matches('=');
            let name = if name.is_empty() {
                format!("cam{}", options.cameras.len())
            } else {
                name.to_string()
            };
            check_camera_name(&name)?;
            options.cameras.push(Camera {
                name,
                url: arg[at..].to_string(),
                properties: Vec::new(),
                events: None,
            });
        } else if arg.contains('=') {
            options.properties.push(arg);
        } else {
            return Err(format!("unexpected argument {}\n{usage}", redacted(&arg)));
        }
    }
    if options.cameras.is_empty() {
        return Err(usage.into());
    }
    Ok(options)
}

/// A process that builds and drops pipelines for months (a camera lost and reconnected) keeps
/// glibc's large blocks returnable: after a large block is freed glibc raises its mmap threshold,
/// so later ones come from its per-thread arenas and stay in them once freed (BENCHMARKS.md,
/// table 10: twelve pipelines started and stopped four times then kept 414 MiB instead of 157).
fn keep_large_blocks_returnable() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting, before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() {
    keep_large_blocks_returnable();
    let options = match parse_args() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("rtsp_camera: {}", redacted(&e));
            std::process::exit(2);
        }
    };
    if let Err(e) = gst::init()
        .map_err(|e| e.to_string())
        .and_then(|_| gstasyncdetect::plugin_register_static().map_err(|e| e.to_string()))
    {
        eprintln!("rtsp_camera: {e}");
        std::process::exit(1);
    }
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, request_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, request_stop as *const () as libc::sighandler_t);
    }
    if let Some(dir) = &options.record
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("rtsp_camera: cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    // Common settings first, then the camera's own.
    let settings: Vec<Vec<String>> = options
        .cameras
        .iter()
        .map(|camera| {
            options
                .properties
                .iter()
                .chain(&camera.properties)
                .cloned()
                .collect()
        })
        .collect();
    // Refuse settings the detector cannot take now, rather than retrying a camera forever.
    for (camera, properties) in options.cameras.iter().zip(&settings) {
        let checked = gst::ElementFactory::make("asyncdetect")
            .build()
            .map_err(|e| e.to_string())
            .and_then(|detect| apply_properties(&detect, properties))
            .and_then(|()| match &camera.events {
                None => Ok(()),
                Some(events) => gst::ElementFactory::make("detectevents")
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|element| {
                        apply_properties(&element, events)?;
                        starts(&element)
                    }),
            });
        if let Err(e) = checked {
            eprintln!(
                "rtsp_camera: camera {}: {}",
                camera.name,
                redacted(&e.to_string())
            );
            std::process::exit(2);
        }
    }
    let workers: Vec<_> = options
        .cameras
        .iter()
        .zip(settings)
        .map(|(camera, properties)| {
            let (name, url) = (camera.name.clone(), camera.url.clone());
            let record = options.record.clone();
            let events = camera.events.clone();
            std::thread::spawn(move || watch(&name, &url, record.as_deref(), &properties, events.as_deref()))
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    println!("all cameras stopped");
}

/// A camera's pipeline: RTSP in, detection, and either a fake sink or a recording to `recording`.
/// Only fixed text is parsed; the URL and the file name are set as properties, so nothing a user
/// typed can change the pipeline's shape. The returned counter counts frames that reached the
/// recording's encoder.
fn pipeline_for(
    url: &str,
    recording: Option<&std::path::Path>,
    properties: &[String],
    events: Option<&[String]>,
) -> Result<(gst::Pipeline, Arc<AtomicU64>), String> {
    let pipeline = gst::parse::launch(
        "rtspsrc name=source latency=200 protocols=tcp ! decodebin ! videoconvert ! asyncdetect name=detect",
    )
    .map_err(|e| e.to_string())?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline".to_string())?;
    pipeline
        .by_name("source")
        .ok_or("no rtspsrc")?
        .set_property("location", url);
    let detect = pipeline.by_name("detect").ok_or("no asyncdetect")?;
    apply_properties(&detect, properties)?;
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|_| format!("GStreamer has no {factory} element"))
    };
    let recorded_frames = Arc::new(AtomicU64::new(0));
    let mut tail = Vec::new();
    if let Some(events) = events {
        let element = make("detectevents")?;
        apply_properties(&element, events)?;
        tail.push(element);
    }
    tail.extend(match recording {
        None => {
            let sink = make("fakesink")?;
            sink.set_property("sync", false);
            vec![sink]
        }
        Some(path) => {
            let encoder = make("openh264enc")?;
            let counter = recorded_frames.clone();
            encoder
                .static_pad("sink")
                .ok_or("openh264enc has no sink pad")?
                .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                });
            let sink = make("filesink")?;
            sink.set_property("location", path.display().to_string());
            vec![
                make("detectoverlay")?,
                make("videoconvert")?,
                encoder,
                make("h264parse")?,
                make("matroskamux")?,
                sink,
            ]
        }
    });
    pipeline.add_many(&tail).map_err(|e| e.to_string())?;
    gst::Element::link_many(std::iter::once(&detect).chain(&tail)).map_err(|e| e.to_string())?;
    Ok((pipeline, recorded_frames))
}

/// Sets `property=value` settings on an element, through each property's own parser: an unknown
/// property or a value GLib cannot parse is an error, not a crash (GLib itself refuses a value
/// out of the property's range, with a warning naming it).
fn apply_properties(detect: &gst::Element, properties: &[String]) -> Result<(), String> {
    let factory = detect
        .factory()
        .map_or_else(|| "element".to_string(), |f| f.name().to_string());
    for setting in properties {
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("`{setting}` is not property=value"))?;
        let (name, value) = (name.trim(), value.trim().trim_matches('"'));
        let pspec = detect
            .find_property(name)
            .ok_or_else(|| format!("{factory} has no property `{name}`"))?;
        let parsed = if pspec.value_type() == glib::Type::STRING {
            Some(value.to_value())
        } else {
            glib::Value::deserialize_with_pspec(value, &pspec).ok()
        };
        let parsed =
            parsed.ok_or_else(|| format!("invalid value `{value}` for {factory} property `{name}`"))?;
        detect.set_property_from_value(name, &parsed);
    }
    Ok(())
}

/// Whether an element starts with its settings (some, like malformed zones, are refused only
/// then), with the reason when it does not.
fn starts(element: &gst::Element) -> Result<(), String> {
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let started = element.set_state(gst::State::Paused);
    let _ = element.set_state(gst::State::Null);
    match started {
        Ok(_) => Ok(()),
        Err(_) => Err(bus
            .pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "it cannot start".to_string())),
    }
}

enum Ended {
    Stopped,
    Lost(String),
}

/// Runs one camera until Ctrl-C, reconnecting whenever it is lost.
fn watch(
    name: &str,
    url: &str,
    record: Option<&std::path::Path>,
    properties: &[String],
    events: Option<&[String]>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut recordings = 0;
    while !STOP.load(Ordering::SeqCst) {
        println!("[{name}] connecting to {}", redacted(url));
        let recording = record.map(|dir| {
            recordings += 1;
            dir.join(format!("{name}-{recordings}.mkv"))
        });
        let ended = match pipeline_for(url, recording.as_deref(), properties, events) {
            Ok((pipeline, recorded_frames)) => {
                let ended = run(name, &pipeline, &mut backoff);
                let _ = pipeline.set_state(gst::State::Null);
                // A connection that never delivered video leaves no file behind (a dead camera
                // would otherwise leave an empty one per attempt), and its number is used again.
                if let Some(path) = &recording
                    && recorded_frames.load(Ordering::Relaxed) == 0
                {
                    let _ = std::fs::remove_file(path);
                    recordings -= 1;
                }
                ended
            }
            Err(e) => Ended::Lost(format!("cannot build the pipeline: {e}")),
        };
        match ended {
            Ended::Stopped => break,
            Ended::Lost(reason) => {
                println!(
                    "[{name}] camera lost: {}; retrying in {} s",
                    redacted(&reason),
                    backoff.as_secs()
                );
                let until = Instant::now() + backoff;
                while Instant::now() < until && !STOP.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    println!("[{name}] stopped");
}

fn run(name: &str, pipeline: &gst::Pipeline, backoff: &mut Duration) -> Ended {
    let Some(bus) = pipeline.bus() else {
        return Ended::Lost("no bus".into());
    };
    if pipeline.set_state(gst::State::Playing).is_err() {
        return Ended::Lost("cannot start".into());
    }
    let detect = pipeline.by_name("detect");
    let detect_src = detect.as_ref().and_then(|d| d.static_pad("src"));
    // The detector counts the frames it receives: when the count stops moving for long, the
    // camera has stopped sending.
    let frames_in = || detect.as_ref().map_or(0, |d| d.property::<u64>("frames-in"));
    let (mut frames_seen, mut last_frame) = (0, Instant::now());
    loop {
        let frames = frames_in();
        if frames != frames_seen {
            (frames_seen, last_frame) = (frames, Instant::now());
        } else if last_frame.elapsed() > STALL_TIMEOUT {
            return Ended::Lost(format!("no video for {} s", STALL_TIMEOUT.as_secs()));
        }
        if STOP.load(Ordering::SeqCst) {
            // Finish files: EOS through the pipeline, then wait (bounded) for it to come out.
            pipeline.send_event(gst::event::Eos::new());
            let _ = bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(5),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
            return Ended::Stopped;
        }
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Element(m) => {
                if let Some(event) = m.structure().and_then(event_line) {
                    println!("[{name}] {event}");
                    continue;
                }
                let Some((timestamp, found)) = m.structure().and_then(shared::result_of) else {
                    continue;
                };
                // Results flow again: the camera is back, so the next loss starts from a short wait.
                *backoff = Duration::from_secs(1);
                if found.is_empty() {
                    continue;
                }
                println!(
                    "[{name}] {}",
                    shared::log_line(detect_src.as_ref(), timestamp, &found)
                );
            }
            gst::MessageView::Eos(_) => return Ended::Lost("the stream ended".into()),
            gst::MessageView::Error(e) => return Ended::Lost(e.error().to_string()),
            _ => (),
        }
    }
}

/// A `detectevents` message as a line: `person #3 entered driveway`, `car #7 crossed gate (in)`.
fn event_line(s: &gst::StructureRef) -> Option<String> {
    if s.name() != "detectevents" {
        return None;
    }
    let text = |field: &str| s.get::<String>(field).unwrap_or_default();
    let who = format!("{} #{}", text("label"), s.get::<u32>("object-id").ok()?);
    Some(match text("event").as_str() {
        "start" => format!("{who} appeared"),
        "end" => format!("{who} gone"),
        "enter" => format!("{who} entered {}", text("zone")),
        "leave" => format!(
            "{who} left {} after {:.1} s",
            text("zone"),
            s.get::<u64>("dwell").unwrap_or(0) as f64 / 1e9
        ),
        "cross" => format!("{who} crossed {} ({})", text("line"), text("direction")),
        other => format!("{who} {other}"),
    })
}
