//! Table 12: many RTSP cameras in one process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::Config;
use crate::common;
use crate::pipelines::*;
use crate::plain_loop::*;
use crate::report::*;

/// The many-cameras clip: bikes.mp4 (motion) then the test photo held still (an idle scene), H.264
/// at `width`x`height` 30 fps, made once with GStreamer into target/media.
pub fn cameras_clip(width: u32, height: u32, seconds_each: u32) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let clip = root.join(format!(
        "target/media/cameras-{width}x{height}-{seconds_each}s.mp4"
    ));
    if clip.exists() {
        return clip;
    }
    let partial = clip.with_extension("partial.mp4");
    let raw_still = format!("video/x-raw,format=I420,width={width},height={height},pixel-aspect-ratio=1/1");
    let raw = format!("{raw_still},framerate=30/1");
    let pipeline = parse_pipeline(&format!(
        "concat name=c ! videoconvert ! openh264enc gop-size=30 complexity=low \
         bitrate=3000000 ! h264parse ! mp4mux ! filesink location={partial} \
         filesrc location={bikes} ! decodebin ! videoconvert ! videoscale add-borders=true ! videorate ! {raw} ! \
         identity eos-after={motion} ! c. \
         filesrc location={photo} ! jpegdec ! videoconvert ! videoscale ! {raw_still} ! imagefreeze num-buffers={still} ! \
         {raw} ! c.",
        partial = partial.display(),
        bikes = root.join("target/media/bikes.mp4").display(),
        photo = root.join("tests/data/person.jpg").display(),
        motion = (seconds_each * 30).min(250),
        still = seconds_each * 30,
    ));
    run_to_eos(&pipeline);
    std::fs::rename(&partial, &clip).expect("clip written");
    clip
}

/// The RTSP test server on a free loopback port, serving `clip` at `/camera` (looped) and at
/// `/camera0` ... (once each) for `cameras` clients; returns it, listening, and the port.
pub fn start_rtsp_server(clip: &std::path::Path, cameras: usize) -> (std::process::Child, u16) {
    let port = crate::common::free_port();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut server = std::process::Command::new("/usr/bin/python3")
        .arg(root.join("tests/rtsp_server.py"))
        .arg(port.to_string())
        .arg(clip)
        .arg(cameras.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the RTSP server (python3-gi, scripts/setup.sh)");
    let mut ready = String::new();
    use std::io::BufRead;
    let _ = std::io::BufReader::new(server.stdout.take().expect("stdout")).read_line(&mut ready);
    (server, port)
}

/// What one run of the many-cameras child process measured.
#[derive(Debug, Default)]
pub struct CamerasRun {
    delivered_fps: Vec<f64>,
    inference_fps: Vec<f64>,
    cpu_percent: f64,
    resident_mib: f64,
    session_users: u32,
    /// The plain ONNX Runtime loop measured in the same process before and after the cameras ran.
    plain_rate: f64,
    /// The process CPU the plain loop used (after the cameras).
    plain_cpu_percent: f64,
}

pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces): utime is 14th, stime 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<u64>() as f64 / 100.0
}

/// Child process: `ASYNCDETECT_CAMERAS=<properties>;<seconds>;<url>,<url>...` runs every camera
/// through `rtspsrc ! decode ! asyncdetect <properties> ! clock-synced sink` (`{index}` in the
/// properties is the camera's number) and prints one `CAMERAS` line.
pub fn cameras_child(spec: &str) {
    let mut parts = spec.split(';');
    let properties = parts.next().unwrap_or("").to_string();
    let seconds: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let urls: Vec<String> = parts
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::to_string)
        .collect();
    // The baseline before and after the cameras, on the same machine in the same minutes: this
    // machine's speed changes from minute to minute, so one taken earlier would skew the ratio.
    let plain_before = plain_loop_rate(seconds.min(5.0), false);
    let mut streams = Vec::new();
    for (index, url) in urls.iter().enumerate() {
        let extra = properties.replace("{index}", &index.to_string());
        let pipeline = parse_pipeline(&format!(
            "rtspsrc location={url} latency=100 protocols=tcp ! rtph264depay ! h264parse ! avdec_h264 ! \
             asyncdetect name=d post-messages=false {extra} ! fakesink name=sink sync=true"
        ));
        let delivered = count_buffers_at_sink(&pipeline);
        pipeline.set_state(gst::State::Playing).expect("plays");
        let detect = pipeline.by_name("d").expect("d");
        streams.push((pipeline, detect, delivered));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while streams
        .iter()
        .any(|(_, d, _)| d.property::<u64>("frames-in") < 30)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the first second's start-up burst pass.
    std::thread::sleep(Duration::from_secs(1));
    let snapshot = |streams: &[(gst::Pipeline, gst::Element, Arc<std::sync::atomic::AtomicU64>)]| {
        streams
            .iter()
            .map(|(_, d, delivered)| {
                (
                    delivered.load(std::sync::atomic::Ordering::Relaxed),
                    d.property::<u64>("frames-inferred"),
                )
            })
            .collect::<Vec<_>>()
    };
    let (start, cpu_start, before) = (Instant::now(), cpu_seconds(), snapshot(&streams));
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (elapsed, cpu, after) = (
        start.elapsed().as_secs_f64(),
        cpu_seconds() - cpu_start,
        snapshot(&streams),
    );
    let run = CamerasRun {
        delivered_fps: before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a.0 - b.0) as f64 / elapsed)
            .collect(),
        inference_fps: before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a.1 - b.1) as f64 / elapsed)
            .collect(),
        cpu_percent: cpu / elapsed * 100.0,
        resident_mib: common::resident_kib() as f64 / 1024.0,
        session_users: streams
            .first()
            .map_or(0, |(_, d, _)| d.property::<u32>("session-users")),
        plain_rate: 0.0,
        plain_cpu_percent: 0.0,
    };
    for (pipeline, _, _) in &streams {
        pipeline.set_state(gst::State::Null).expect("stops");
    }
    drop(streams);
    let mut run = run;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let plain_after = plain_loop_rate(seconds.min(5.0), false);
    run.plain_cpu_percent = (cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
    run.plain_rate = (plain_before + plain_after) / 2.0;
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(",");
    println!(
        "CAMERAS delivered={} inferred={} cpu={:.1} rss={:.1} users={} plain={:.2} plaincpu={:.1}",
        list(&run.delivered_fps),
        list(&run.inference_fps),
        run.cpu_percent,
        run.resident_mib,
        run.session_users,
        run.plain_rate,
        run.plain_cpu_percent
    );
}

pub fn run_cameras_child(properties: &str, seconds: f64, urls: &[String]) -> Option<CamerasRun> {
    let fields = child_report(
        "ASYNCDETECT_CAMERAS",
        &format!("{properties};{seconds};{}", urls.join(",")),
        "CAMERAS ",
    )?;
    let mut run = CamerasRun::default();
    for (key, value) in fields {
        match key.as_str() {
            "delivered" => run.delivered_fps = numbers(&value),
            "inferred" => run.inference_fps = numbers(&value),
            "cpu" => run.cpu_percent = value.parse().ok()?,
            "rss" => run.resident_mib = value.parse().ok()?,
            "users" => run.session_users = value.parse().ok()?,
            "plain" => run.plain_rate = value.parse().ok()?,
            "plaincpu" => run.plain_cpu_percent = value.parse().ok()?,
            _ => (),
        }
    }
    Some(run)
}

pub fn table_cameras(config: &Config) {
    let (cameras, width, height, seconds_each, seconds) = if config.full {
        (8, 1280, 720, 10, 15.0)
    } else {
        (2, 320, 180, 2, 1.0)
    };
    let clip = cameras_clip(width, height, seconds_each);
    let (mut server, port) = start_rtsp_server(&clip, cameras);
    let urls: Vec<String> = (0..cameras)
        .map(|i| format!("rtsp://127.0.0.1:{port}/camera{i}"))
        .collect();
    let variants: Vec<(&str, String)> = match std::env::var("CAMERAS_VARIANTS") {
        // Experiments: `CAMERAS_VARIANTS="a=props|b=props"`.
        Ok(list) => list
            .split('|')
            .filter_map(|v| v.split_once('='))
            .map(|(name, props)| (&*name.to_string().leak(), props.to_string()))
            .collect(),
        Err(_) => vec![
            ("decode", "threads=1 max-fps=0.01".to_string()),
            ("default", String::new()),
            ("shared", "threads=1".to_string()),
            ("gated", "motion-gating=true".to_string()),
            (
                "separate",
                "threads=1 session-lanes=1 model-instance-id=camera{index}".to_string(),
            ),
        ],
    };
    let mut runs = Vec::new();
    for (variant, properties) in &variants {
        runs.push((*variant, run_cameras_child(properties, seconds, &urls)));
    }
    let _ = server.kill();
    let _ = server.wait();
    let motion = (seconds_each * 30).min(250) as f64 / 30.0;
    println!(
        "\n## 12. Many cameras: {cameras} live {width}x{height} 30 fps RTSP streams from 127.0.0.1 in one process \
         ({seconds} s measured; the clip is {motion:.1} s of motion then {seconds_each} s of a still scene)\n"
    );
    println!(
        "| variant | session users | delivered fps per stream (min / mean) | inferences/s per stream (min / max) | total inferences/s | plain loop before and after (inferences/s) | total / plain loop | process CPU % | resident MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut shared = None;
    for (variant, run) in &runs {
        let Some(run) = run else {
            println!("| {variant} | run failed | | | | | | | |");
            continue;
        };
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let total: f64 = run.inference_fps.iter().sum();
        let plain = run.plain_rate.max(1e-9);
        let name = match *variant {
            "decode" => "receiving and decoding only (the model runs once per camera)",
            "default" => {
                "shared instance, default settings (adapts: one-thread lanes once several streams share it)"
            }
            "shared" => "shared instance, `threads=1` (up to cores + 1 lanes of 1 thread)",
            "gated" => "default settings + `motion-gating=true`",
            "separate" => "a session per camera (`model-instance-id` each, 1 thread)",
            other => other,
        };
        println!(
            "| {name} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {total:.1} | {plain:.1} | {:.2} | {:.0} | {:.0} |",
            run.session_users,
            min(&run.delivered_fps),
            mean(&run.delivered_fps),
            min(&run.inference_fps),
            max(&run.inference_fps),
            total / plain,
            run.cpu_percent,
            run.resident_mib
        );
        if *variant == "default" {
            goal(
                format!(
                    "{cameras} cameras, default settings: slowest stream delivered {:.1} fps, at least 28.8 (full rate within measurement slack)",
                    min(&run.delivered_fps)
                ),
                min(&run.delivered_fps) >= 28.8,
            );
            goal(
                format!(
                    "{cameras} cameras, default settings: total inference rate {:.2} of the plain loop, at least 0.90",
                    total / plain
                ),
                total / plain >= 0.9,
            );
            let mean_rate = mean(&run.inference_fps);
            let spread = run
                .inference_fps
                .iter()
                .map(|r| (r - mean_rate).abs() / mean_rate.max(1e-9))
                .fold(0.0, f64::max);
            goal(
                format!(
                    "{cameras} cameras, default settings: every stream's inference rate within {:.0} % of the mean, at most 20 %",
                    spread * 100.0
                ),
                spread <= 0.2,
            );
            shared = Some(run);
        }
    }
    if let Some(shared) = shared {
        println!(
            "CPU: the plain loop used {:.0} % of the process's CPU for {:.1} inferences/s; the cameras \
             {:.0} % in all for {:.1} inferences/s and eight streams.",
            shared.plain_cpu_percent,
            shared.plain_rate,
            shared.cpu_percent,
            shared.inference_fps.iter().sum::<f64>()
        );
        if let Some((_, Some(decode))) = runs.iter().find(|r| r.0 == "decode") {
            // Receiving and decoding the streams takes CPU the bare loop never pays: the rate the
            // model could reach in what is left, at the bare loop's inferences per CPU second.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let left = (cores * 100.0 - decode.cpu_percent).max(0.0);
            let ceiling = left / shared.plain_cpu_percent.max(1e-9);
            let reached = shared.inference_fps.iter().sum::<f64>() / shared.plain_rate.max(1e-9);
            println!(
                "Ceiling: receiving and decoding alone took {:.0} % of {:.0} %; at the plain loop's \
                 inferences per CPU second the rest allows {ceiling:.2} of the plain loop's rate, \
                 and the default settings reached {reached:.2} ({:.2} of that ceiling).",
                decode.cpu_percent,
                cores * 100.0,
                reached / ceiling.max(1e-9)
            );
        }
    }
    if let (Some(shared), Some(Some(separate))) =
        (shared, runs.iter().find(|r| r.0 == "separate").map(|r| &r.1))
    {
        println!(
            "\nMemory: one shared instance {:.0} MiB against {:.0} MiB with a session per camera.",
            shared.resident_mib, separate.resident_mib
        );
        if let Some((_, Some(gated))) = runs.iter().find(|r| r.0 == "gated") {
            println!(
                "Motion gating: process CPU {:.0} % against {:.0} % without it ({:.0} % less), \
                 {:.1} against {:.1} inferences/s in total.",
                gated.cpu_percent,
                shared.cpu_percent,
                (1.0 - gated.cpu_percent / shared.cpu_percent.max(1e-9)) * 100.0,
                gated.inference_fps.iter().sum::<f64>(),
                shared.inference_fps.iter().sum::<f64>()
            );
        }
    }
    goal(
        format!("{cameras} cameras: all three runs completed"),
        runs.iter().all(|(_, r)| r.is_some()),
    );
}
