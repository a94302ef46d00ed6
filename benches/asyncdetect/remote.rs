//! Table 16: many live cameras in one process with the model on a loopback Triton Inference
//! Server (KServe v2 gRPC), against a plain client loop driving the same server, and what losing
//! the server mid-stream costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstasyncdetect::engine::{Model, ModelOptions, ModelSource, RunCanceller, ServedModel, ServerUrl};

use crate::Config;
use crate::cameras::{cameras_clip, cpu_seconds, start_rtsp_server};
use crate::common::triton::{Ports, Triton};
use crate::pipelines::*;
use crate::plain_loop::test_card_tensor;
use crate::report::*;

/// Requests in flight, for the cameras and for the plain loop alike.
const IN_FLIGHT: usize = 8;

/// The plain client loop: `IN_FLIGHT` threads each sending the pre-processed test card to the
/// server as fast as answers come, through the element's own client (no GStreamer): what the
/// server can do for a client that does nothing else. Inferences per second over `seconds`.
fn plain_client_rate(url: &str, seconds: f64) -> f64 {
    let source = ModelSource::Server(ServedModel {
        server: ServerUrl::parse(url).expect("a server address"),
        name: "ssd".into(),
        version: String::new(),
    });
    let options = ModelOptions {
        lanes: IN_FLIGHT,
        ..Default::default()
    };
    let tensor = Arc::new(test_card_tensor());
    let done = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (source, options, tensor, done, counting, stop) = (
                source.clone(),
                options.clone(),
                tensor.clone(),
                done.clone(),
                counting.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let canceller = Arc::new(RunCanceller::default());
                let mut model = Model::load(
                    &source,
                    Default::default(),
                    &options,
                    &canceller,
                    &canceller,
                    &|| false,
                )
                .expect("the served model loads");
                while !stop.load(Ordering::Relaxed) {
                    model.detect(&tensor, 300 * 3).expect("the server answers");
                    if counting.load(Ordering::Relaxed) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Every thread warmed up first.
    std::thread::sleep(Duration::from_secs(2));
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    rate
}

struct Camera {
    pipeline: gst::Pipeline,
    detect: gst::Element,
    delivered: Arc<AtomicU64>,
    missing: Arc<AtomicU64>,
}

impl Camera {
    /// Frames delivered, frames inferred, frames missing at the sink.
    fn counts(&self) -> (u64, u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.detect.property::<u64>("frames-inferred"),
            self.missing.load(Ordering::Relaxed),
        )
    }
}

/// Counts the frames missing from the 30 fps sequence reaching the sink: a live camera's frames
/// are 1/30 s apart, and a stalled pipeline loses some (its jitter buffer drops what is late).
fn missing_at_sink(pipeline: &gst::Pipeline) -> Arc<AtomicU64> {
    let missing = Arc::new(AtomicU64::new(0));
    let counter = missing.clone();
    // The last timestamp seen (u64::MAX: none yet).
    let last = AtomicU64::new(u64::MAX);
    pipeline
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .expect("sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                let previous = last.swap(pts.nseconds(), Ordering::Relaxed);
                if previous != u64::MAX && pts.nseconds() > previous {
                    let frames = ((pts.nseconds() - previous) as f64 / (1e9 / 30.0)).round() as u64;
                    counter.fetch_add(frames.saturating_sub(1), Ordering::Relaxed);
                }
            }
            gst::PadProbeReturn::Ok
        });
    missing
}

/// Child process: `ASYNCDETECT_REMOTE=<seconds>;<outage seconds>;<url>,<url>...` starts Triton,
/// measures the plain client loop, runs every camera through `rtspsrc ! decode ! asyncdetect
/// inference-server=... ! clock-synced sink`, then kills the server, restarts it, and prints one
/// `REMOTE` line.
pub fn remote_child(spec: &str) {
    let mut parts = spec.split(';');
    let seconds: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let outage: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let urls: Vec<&str> = parts.next().unwrap_or("").split(',').collect();
    let mut triton = Triton::start(Ports::reserve(), None);
    let server = triton.url();
    let plain_before = plain_client_rate(&server, seconds.min(5.0));

    let cameras: Vec<Camera> = urls
        .iter()
        .map(|url| {
            let pipeline = parse_pipeline(&format!(
                "rtspsrc location={url} latency=100 protocols=tcp ! rtph264depay ! h264parse ! avdec_h264 ! \
                 asyncdetect name=d post-messages=false inference-server={server} server-model=ssd \
                 session-lanes={IN_FLIGHT} ! fakesink name=sink sync=true"
            ));
            let delivered = count_buffers_at_sink(&pipeline);
            let missing = missing_at_sink(&pipeline);
            pipeline.set_state(gst::State::Playing).expect("plays");
            let detect = pipeline.by_name("d").expect("d");
            Camera {
                pipeline,
                detect,
                delivered,
                missing,
            }
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cameras.iter().any(|c| c.counts().1 < 3) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let snapshot = || cameras.iter().map(Camera::counts).collect::<Vec<_>>();
    let (start, cpu_start, before) = (Instant::now(), cpu_seconds(), snapshot());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (elapsed, cpu, after) = (
        start.elapsed().as_secs_f64(),
        cpu_seconds() - cpu_start,
        snapshot(),
    );
    let per_camera = |pick: fn(&(u64, u64, u64)) -> u64| -> Vec<f64> {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| (pick(a) - pick(b)) as f64 / elapsed)
            .collect()
    };
    let delivered = per_camera(|c| c.0);
    let inferred = per_camera(|c| c.1);
    let lanes_open = cameras
        .first()
        .map_or(0, |c| c.detect.property::<u32>("session-lanes-open"));

    // The server lost: killed, gone for `outage` seconds, then started again (its start-up
    // takes a while longer; at low priority, as if on a machine of its own). Counted from the
    // kill to the first new result after its return.
    let total_inferred = || cameras.iter().map(|c| c.counts().1).sum::<u64>();
    let outage_start = (Instant::now(), snapshot());
    triton.kill();
    std::thread::sleep(Duration::from_secs_f64(outage));
    let stalled = total_inferred();
    triton.nice = 19;
    triton.restart();
    let ready = Instant::now();
    let mut first_result = None;
    while ready.elapsed() < Duration::from_secs(30) {
        if total_inferred() > stalled {
            first_result = Some(ready.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // `restart` returns once the script says every model answers; results that came a moment
    // before count as 0 s.
    let recovery = first_result.unwrap_or(f64::NAN);
    std::thread::sleep(Duration::from_secs(1));
    let outage_end = (Instant::now(), snapshot());
    let window = outage_end.0.duration_since(outage_start.0).as_secs_f64();
    let lost: Vec<f64> = outage_start
        .1
        .iter()
        .zip(&outage_end.1)
        .map(|(b, a)| (a.2 - b.2) as f64)
        .collect();
    let outage_fps: Vec<f64> = outage_start
        .1
        .iter()
        .zip(&outage_end.1)
        .map(|(b, a)| (a.0 - b.0) as f64 / window)
        .collect();
    // Stopped side by side, without waiting on one that hangs: rtspsrc (1.22) can deadlock in
    // its stop, and the plain loop after the cameras needs the CPU they use, not their end.
    let stopping: Vec<_> = cameras
        .into_iter()
        .map(|camera| {
            std::thread::spawn(move || {
                let _ = camera.pipeline.set_state(gst::State::Null);
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stopping.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let plain_after = plain_client_rate(&server, seconds.min(5.0));
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(",");
    println!(
        "REMOTE delivered={} inferred={} cpu={:.1} lanes={lanes_open} plain={:.2} window={window:.1} lost={} outagefps={} recovery={recovery:.2}",
        list(&delivered),
        list(&inferred),
        cpu / elapsed * 100.0,
        (plain_before + plain_after) / 2.0,
        list(&lost),
        list(&outage_fps),
    );
}

#[derive(Debug, Default)]
struct RemoteRun {
    delivered: Vec<f64>,
    inferred: Vec<f64>,
    cpu: f64,
    lanes: f64,
    plain: f64,
    window: f64,
    lost: Vec<f64>,
    outage_fps: Vec<f64>,
    recovery: f64,
}

fn run_child(seconds: f64, outage: f64, urls: &[String]) -> Option<RemoteRun> {
    let fields = child_report(
        "ASYNCDETECT_REMOTE",
        &format!("{seconds};{outage};{}", urls.join(",")),
        "REMOTE ",
    )?;
    let mut run = RemoteRun::default();
    for (key, value) in fields {
        let number = || value.parse::<f64>().unwrap_or(f64::NAN);
        match key.as_str() {
            "delivered" => run.delivered = numbers(&value),
            "inferred" => run.inferred = numbers(&value),
            "lost" => run.lost = numbers(&value),
            "outagefps" => run.outage_fps = numbers(&value),
            "cpu" => run.cpu = number(),
            "lanes" => run.lanes = number(),
            "plain" => run.plain = number(),
            "window" => run.window = number(),
            "recovery" => run.recovery = number(),
            _ => (),
        }
    }
    Some(run)
}

pub fn table_remote(config: &Config) {
    let (cameras, width, height, seconds_each, seconds, outage) = if config.full {
        (8, 1280, 720, 10, 15.0, 5.0)
    } else {
        (2, 320, 180, 2, 1.0, 1.0)
    };
    println!(
        "\n## 16. Remote inference: {cameras} live {width}x{height} 30 fps RTSP cameras in one process, the model on a \
         loopback Triton Inference Server ({seconds} s measured; then the server killed, gone {outage} s, restarted)\n"
    );
    let clip = cameras_clip(width, height, seconds_each);
    let (mut server, port) = start_rtsp_server(&clip, cameras);
    // `/camera` loops the clip (each client gets its own stream): the run outlasts it.
    let urls: Vec<String> = (0..cameras)
        .map(|_| format!("rtsp://127.0.0.1:{port}/camera"))
        .collect();
    let run = run_child(seconds, outage, &urls);
    let _ = server.kill();
    let _ = server.wait();
    let Some(run) = run else {
        println!("(the run failed)");
        goal("remote inference benchmark ran".into(), false);
        return;
    };
    println!(
        "Triton 2.51 (nvidia-pytriton, Python backend running the built-in SSD with ONNX Runtime, dynamic batching \
         up to 8) on 127.0.0.1, sharing this machine's cores with the cameras. The plain client loop: {IN_FLIGHT} \
         threads sending the pre-processed test card through the element's own gRPC client, back to back, before \
         and after the cameras.\n"
    );
    println!(
        "| delivered fps per camera (min / mean) | inferences/s per camera (min / max) | total inferences/s | plain client loop (inferences/s) | total / plain loop | requests in flight (lanes open) | process CPU % |"
    );
    println!("|---|---|---|---|---|---|---|");
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let total: f64 = run.inferred.iter().sum();
    let ratio = total / run.plain.max(1e-9);
    println!(
        "| {:.1} / {:.1} | {:.1} / {:.1} | {total:.1} | {:.1} | {ratio:.2} | {:.0} | {:.0} |",
        min(&run.delivered),
        mean(&run.delivered),
        min(&run.inferred),
        max(&run.inferred),
        run.plain,
        run.lanes,
        run.cpu
    );
    let lost: f64 = run.lost.iter().sum();
    println!(
        "\n| outage | delivered fps per camera meanwhile (min) | frames lost (all cameras) | seconds from the server's return to the first new result |"
    );
    println!("|---|---|---|---|");
    println!(
        "| killed, {outage} s gone, restarted ({:.1} s from the kill to a second after the first new result) | {:.1} | {lost:.0} | {:.2} |",
        run.window,
        min(&run.outage_fps),
        run.recovery
    );
    goal(
        format!(
            "remote inference, {cameras} cameras: slowest delivered {:.1} fps, at least 28.8",
            min(&run.delivered)
        ),
        min(&run.delivered) >= 28.8,
    );
    goal(
        format!(
            "remote inference, {cameras} cameras: total inference rate {ratio:.2} of the plain client loop, at least 0.90"
        ),
        ratio >= 0.9,
    );
    goal(
        format!("remote inference: {lost:.0} frames lost while the server was away, none"),
        lost == 0.0,
    );
    let limit = 2.0 + gstasyncdetect::backoff::LAST_RETRY.as_secs_f64();
    goal(
        format!(
            "remote inference: first result {:.2} s after the server's return, under {limit:.0} s (2 s + the longest back-off)",
            run.recovery
        ),
        run.recovery < limit,
    );
}
