//! Table 14: events of 8 live cameras published to one loopback MQTT broker (Debian's Mosquitto),
//! with the broker up and then gone for a while: the video's delivered rate and lateness, the
//! publish latency, and what was lost.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gst::prelude::*;

use crate::Config;
use crate::pipelines::*;
use crate::report::*;

const CAMERAS: usize = 8;
const FPS: u64 = 30;
/// Tracked people per camera, each walking up and down across the camera's line.
const PEOPLE: usize = 4;

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn start_broker(port: u16) -> Option<Child> {
    let binary = ["/usr/sbin/mosquitto", "mosquitto"]
        .into_iter()
        .find(|b| std::path::Path::new(b).exists() || *b == "mosquitto")?;
    let child = Command::new(binary)
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child)
}

/// A camera's pipeline, its `detectevents` and what its sink saw.
type Camera = (gst::Pipeline, gst::Element, Arc<SinkCounts>);

/// What the sink of one camera saw.
#[derive(Default)]
struct SinkCounts {
    /// When the buffer now inside `detectevents` entered it (ns since `EPOCH`).
    entered_ns: AtomicU64,
    /// Time each buffer spent inside `detectevents` on the streaming thread.
    inside: Mutex<Vec<Duration>>,
    frames: AtomicU64,
    /// Frames missing from the source's numbering.
    missing: AtomicU64,
    last_offset: AtomicU64,
    /// Worst lateness at the sink (buffer arrival after its clock time), microseconds.
    worst_late_us: AtomicU64,
}

/// Events received by the subscriber: (camera, object, type, place, stream time) and latencies.
#[derive(Default)]
struct Received {
    events: HashSet<String>,
    latencies: Vec<Duration>,
    /// When each event was published (seconds since 1970, from its `time`).
    published_at: Vec<f64>,
}

fn subscribe(port: u16, received: Arc<Mutex<Received>>) -> rumqttc::Client {
    let options = rumqttc::MqttOptions::new("bench-reader", "127.0.0.1", port);
    let (client, mut connection) = rumqttc::Client::new(options, 1000);
    let resubscribe = client.clone();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                // A new session after every connect (the broker may have restarted): subscribe again.
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    let _ = resubscribe.try_subscribe("asyncdetect/events", rumqttc::QoS::AtLeastOnce);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let now = unix_now();
                    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                        continue;
                    };
                    let key = format!(
                        "{} {} {} {}{} {}",
                        json["camera"],
                        json["object_id"],
                        json["type"],
                        json["zone"],
                        json["line"],
                        json["timestamp"]
                    );
                    let mut received = received.lock().unwrap();
                    if received.events.insert(key)
                        && let Some(sent) = json["time"].as_f64()
                    {
                        received
                            .latencies
                            .push(Duration::from_secs_f64((now - sent).max(0.0)));
                        received.published_at.push(sent);
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    client
}

/// One camera: a live 720p30 pattern whose frames carry `PEOPLE` tracked people walking across a
/// line and through a zone (ROI metas as `asyncdetect tracking=...` attaches them), into
/// `detectevents` publishing to the broker, into a clock-synchronised sink.
fn camera(index: usize, port: Option<u16>, snapshots: bool) -> Camera {
    let publish = port.map_or(String::new(), |port| {
        format!("mqtt-broker=mqtt://127.0.0.1:{port} mqtt-snapshots={snapshots}")
    });
    let pipeline = parse_pipeline(&format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=1280,height=720,framerate={FPS}/1 ! \
         identity name=objects ! detectevents name=events camera=cam{index} lines=\"gate:0,0.5 1,0.5\" \
         zones=\"top:0,0 1,0 1,0.5 0,0.5\" {publish} ! fakesink name=sink sync=true"
    ));
    let objects = pipeline.by_name("objects").expect("identity");
    objects
        .static_pad("src")
        .expect("src pad")
        .add_probe(gst::PadProbeType::BUFFER, |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
                let buffer = buffer.make_mut();
                let t = buffer.pts().map_or(0.0, |p| p.seconds_f64());
                for person in 0..PEOPLE {
                    // Up and down the picture every 4 s, each person on their own phase and column.
                    let phase = (t / 4.0 + person as f64 / PEOPLE as f64).fract();
                    let y = 0.25 + 0.6 * (1.0 - (2.0 * phase - 1.0).abs());
                    let x = 0.1 + 0.2 * person as f64;
                    let rect = ((x * 1280.0) as u32, ((y - 0.2) * 720.0) as u32, 100, 144);
                    let mut meta = gst_video::VideoRegionOfInterestMeta::add(buffer, "person", rect);
                    meta.set_id(person as i32 + 1);
                    meta.add_param(
                        gst::Structure::builder("detection")
                            .field("label", "person")
                            .field("confidence", 0.9f64)
                            .field("x_min", x)
                            .field("y_min", y - 0.2)
                            .field("x_max", x + 100.0 / 1280.0)
                            .field("y_max", y)
                            .build(),
                    );
                    meta.add_param(
                        gst::Structure::builder("object_id")
                            .field("id", person as i32 + 1)
                            .build(),
                    );
                }
            }
            gst::PadProbeReturn::Ok
        });
    let counts = Arc::new(SinkCounts::default());
    let sink = pipeline.by_name("sink").expect("fakesink");
    let seen = counts.clone();
    let element = sink.clone();
    sink.static_pad("sink")
        .expect("sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_ref() {
                seen.frames.fetch_add(1, Ordering::Relaxed);
                let offset = buffer.offset();
                let last = seen.last_offset.swap(offset, Ordering::Relaxed);
                if offset > last + 1 && last > 0 {
                    seen.missing.fetch_add(offset - last - 1, Ordering::Relaxed);
                }
                if let (Some(clock), Some(base), Some(pts)) =
                    (element.clock(), element.base_time(), buffer.pts())
                {
                    let now = clock.time();
                    let late = now.nseconds() as i64 - (base.nseconds() + pts.nseconds()) as i64;
                    seen.worst_late_us
                        .fetch_max((late.max(0) / 1000) as u64, Ordering::Relaxed);
                }
            }
            gst::PadProbeReturn::Ok
        });
    let events = pipeline.by_name("events").expect("detectevents");
    let entering = counts.clone();
    events
        .static_pad("sink")
        .expect("sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            entering
                .entered_ns
                .store(EPOCH.elapsed().as_nanos() as u64, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    let leaving = counts.clone();
    events
        .static_pad("src")
        .expect("src pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let inside = EPOCH.elapsed().as_nanos() as u64 - leaving.entered_ns.load(Ordering::Relaxed);
            leaving.inside.lock().unwrap().push(Duration::from_nanos(inside));
            gst::PadProbeReturn::Ok
        });
    (pipeline, events, counts)
}

struct Phase {
    fps: Vec<f64>,
    missing: u64,
    worst_late: Duration,
    /// Time per buffer inside `detectevents`, all cameras, sorted.
    inside: Vec<Duration>,
}

fn measure(
    cameras: &[(gst::Pipeline, gst::Element, Arc<SinkCounts>)],
    seconds: f64,
    during: impl FnOnce(),
) -> Phase {
    let before: Vec<u64> = cameras
        .iter()
        .map(|(_, _, c)| c.frames.load(Ordering::Relaxed))
        .collect();
    let missing_before: u64 = cameras
        .iter()
        .map(|(_, _, c)| c.missing.load(Ordering::Relaxed))
        .sum();
    for (_, _, c) in cameras {
        c.worst_late_us.store(0, Ordering::Relaxed);
        c.inside.lock().unwrap().clear();
    }
    let started = Instant::now();
    during();
    let rest = Duration::from_secs_f64(seconds).saturating_sub(started.elapsed());
    std::thread::sleep(rest);
    let elapsed = started.elapsed().as_secs_f64();
    let mut inside: Vec<Duration> = cameras
        .iter()
        .flat_map(|(_, _, c)| c.inside.lock().unwrap().clone())
        .collect();
    inside.sort();
    Phase {
        inside,
        fps: cameras
            .iter()
            .zip(before)
            .map(|((_, _, c), b)| (c.frames.load(Ordering::Relaxed) - b) as f64 / elapsed)
            .collect(),
        missing: cameras
            .iter()
            .map(|(_, _, c)| c.missing.load(Ordering::Relaxed))
            .sum::<u64>()
            - missing_before,
        worst_late: Duration::from_micros(
            cameras
                .iter()
                .map(|(_, _, c)| c.worst_late_us.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0),
        ),
    }
}

fn published(cameras: &[Camera]) -> u64 {
    cameras.iter().map(|(_, e, _)| e.property::<u64>("events")).sum()
}

fn start_cameras(port: Option<u16>, snapshots: bool) -> Vec<Camera> {
    let cameras: Vec<Camera> = (0..CAMERAS).map(|i| camera(i, port, snapshots)).collect();
    for (pipeline, _, _) in &cameras {
        let _ = pipeline.set_state(gst::State::Playing);
    }
    // Connected and past the start.
    std::thread::sleep(Duration::from_secs(2));
    cameras
}

fn stop_cameras(cameras: Vec<Camera>) {
    for (pipeline, _, _) in &cameras {
        let _ = pipeline.set_state(gst::State::Null);
    }
}

fn total(cameras: &[Camera], property: &str) -> u64 {
    cameras.iter().map(|(_, e, _)| e.property::<u64>(property)).sum()
}

/// A phase with the broker up: the video, and the events of the phase as the subscriber got them.
struct Delivered {
    phase: Phase,
    published: u64,
    received: usize,
    latencies: Vec<Duration>,
}

fn broker_up(cameras: &[Camera], received: &Mutex<Received>, seconds: f64) -> Delivered {
    let published_before = published(cameras);
    let start = unix_now();
    let phase = measure(cameras, seconds, || {});
    let published = published(cameras) - published_before;
    let end = unix_now();
    // Let the last events of the phase arrive.
    std::thread::sleep(Duration::from_secs(2));
    let r = received.lock().unwrap();
    let mut latencies: Vec<Duration> = (0..r.published_at.len())
        .filter(|&i| (start..end).contains(&r.published_at[i]))
        .map(|i| r.latencies[i])
        .collect();
    latencies.sort();
    Delivered {
        phase,
        published,
        received: latencies.len(),
        latencies,
    }
}

fn min(fps: &[f64]) -> f64 {
    fps.iter().copied().fold(f64::INFINITY, f64::min)
}

fn mean(fps: &[f64]) -> f64 {
    fps.iter().sum::<f64>() / fps.len().max(1) as f64
}

/// The columns every row shares: rate, frames lost, time inside the element, lateness.
fn video_columns(phase: &Phase) -> String {
    format!(
        "{:.1} / {:.1} | {} | {} / {} / {} | {}",
        min(&phase.fps),
        mean(&phase.fps),
        phase.missing,
        ms(percentile(&phase.inside, 0.5)),
        ms(percentile(&phase.inside, 0.99)),
        ms(percentile(&phase.inside, 1.0)),
        ms(phase.worst_late)
    )
}

pub fn table_events(config: &Config) {
    let (up, down) = if config.full { (20.0, 10.0) } else { (2.0, 1.0) };
    println!(
        "\n## 14. Events of {CAMERAS} live 1280x720 {FPS} fps cameras into one loopback MQTT broker ({up} s a row; the broker then gone for {down} s)\n"
    );
    let port = crate::common::free_port();
    let Some(mut broker) = start_broker(port) else {
        println!("(skipped: no mosquitto; `bash scripts/setup.sh` installs it)");
        return;
    };
    let received = Arc::new(Mutex::new(Received::default()));
    let subscriber = subscribe(port, received.clone());
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "Each camera: {PEOPLE} tracked people walking across a line and through a zone (start, enter, leave and"
    );
    println!(
        "cross events and count changes), `detectevents` publishing to Mosquitto on 127.0.0.1, read back by a"
    );
    println!(
        "subscriber in the same process. Time in detectevents includes any preemption by the machine's other threads.\n"
    );

    // The same cameras without publishing: what the machine's load alone costs the video.
    let quiet = start_cameras(None, false);
    let baseline = measure(&quiet, up, || {});
    let quiet_events = published(&quiet);
    stop_cameras(quiet);

    let cameras = start_cameras(Some(port), false);
    let delivered = broker_up(&cameras, &received, up);
    // The broker goes away for a while, then comes back on the same port.
    let published_before = published(&cameras);
    let outage_start = unix_now();
    let _ = broker.kill();
    let _ = broker.wait();
    let outage = measure(&cameras, down, || {});
    let outage_end = unix_now();
    let published_outage = published(&cameras) - published_before;
    let back = Instant::now();
    let restarted = start_broker(port);
    let of_outage = |r: &Received| {
        r.published_at
            .iter()
            .filter(|t| (outage_start..outage_end).contains(*t))
            .count() as u64
    };
    // The subscriber and the cameras reconnect by themselves.
    let deadline = Instant::now() + Duration::from_secs(30);
    while of_outage(&received.lock().unwrap()) < published_outage && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let resumed = back.elapsed();
    let received_outage = of_outage(&received.lock().unwrap());
    let dropped = total(&cameras, "mqtt-dropped");
    stop_cameras(cameras);

    let cameras = start_cameras(Some(port), true);
    let with_snapshots = broker_up(&cameras, &received, up);
    let snapshots_skipped = total(&cameras, "snapshots-dropped");
    let dropped_with_snapshots = total(&cameras, "mqtt-dropped");
    stop_cameras(cameras);
    let _ = subscriber.disconnect();
    if let Some(mut broker) = restarted {
        let _ = broker.kill();
        let _ = broker.wait();
    }

    println!(
        "| row | delivered fps per camera (min / mean) | frames lost | streaming thread in detectevents per buffer p50 / p99 / max (ms) | worst lateness at the sink (ms) | events published | events received | publish latency p50 / p99 (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| not publishing (no broker set) | {} | {quiet_events} (not sent) | - | - |",
        video_columns(&baseline)
    );
    for (name, row) in [
        ("broker up", &delivered),
        ("broker up, snapshots on", &with_snapshots),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} / {} |",
            video_columns(&row.phase),
            row.published,
            row.received,
            ms(percentile(&row.latencies, 0.5)),
            ms(percentile(&row.latencies, 0.99))
        );
    }
    println!(
        "| broker down {down} s, then restarted | {} | {published_outage} | all {received_outage} after its return, {:.1} s after the restart | - |",
        video_columns(&outage),
        resumed.as_secs_f64()
    );
    println!(
        "\nMessages dropped by the publishers' queues: {dropped} (broker up and down), {dropped_with_snapshots} \
         (snapshots on). Snapshot frames skipped while an encoder was busy: {snapshots_skipped}."
    );
    if config.full {
        // The arrival rate over a window moves by a few tenths on a loaded machine even without
        // publishing (the first row): publishing is judged side by side with it.
        goal(
            format!(
                "table 14: publishing costs the video no frame: slowest camera {:.1} fps with the broker up \
                 against {:.1} without publishing, {} frames lost",
                min(&delivered.phase.fps),
                min(&baseline.fps),
                delivered.phase.missing
            ),
            min(&delivered.phase.fps) >= min(&baseline.fps) - 0.1 && delivered.phase.missing == 0,
        );
        goal(
            format!(
                "table 14: publish latency p99 {} ms, under 50 ms",
                ms(percentile(&delivered.latencies, 0.99))
            ),
            percentile(&delivered.latencies, 0.99) < Duration::from_millis(50),
        );
        goal(
            format!(
                "table 14: {} events lost with the broker up, none wanted",
                delivered.published.saturating_sub(delivered.received as u64)
            ),
            delivered.received as u64 >= delivered.published,
        );
        goal(
            format!(
                "table 14: {} video frames lost while the broker was down, none wanted",
                outage.missing
            ),
            outage.missing == 0,
        );
    }
}
