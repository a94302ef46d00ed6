//! Table 10: resident memory over a long live run on real content, and what stays after many
//! pipelines stop.

use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::Config;
use crate::common;
use crate::pipelines::*;
use crate::report::*;

/// The looped clip decoded, scaled to 1080p I420 and paced at 30 fps by a clock-synchronised sink.
fn live_1080p30(element: &str) -> gst::Pipeline {
    parse_pipeline(&format!(
        "multifilesrc location={} loop=true \
           caps=video/x-h264,stream-format=byte-stream,alignment=au,framerate=30/1 ! \
         h264parse ! avdec_h264 ! videoconvert ! videoscale ! \
         video/x-raw,format=I420,width=1920,height=1080 ! {element} ! fakesink sync=true",
        looping_clip().display()
    ))
}

pub fn table_memory(config: &Config) {
    long_run(config);
    after_stop(config);
}

/// Resident memory sampled every second while bikes.mp4 loops live at 1080p30 through
/// asyncdetect and detectoverlay; `MEMORY_SECONDS` sets the length of a full run (default 600).
fn long_run(config: &Config) {
    let seconds: u64 = if config.full {
        std::env::var("MEMORY_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600)
    } else {
        3
    };
    let pipeline = live_1080p30("asyncdetect name=d ! detectoverlay");
    let detect = pipeline.by_name("d").expect("d");
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    let mut samples = Vec::new();
    let start = Instant::now();
    for second in 1..=seconds {
        // Sleep to the next whole second of the run, so samples do not drift.
        let due = start + Duration::from_secs(second);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        // Read the bus as an application does: unread messages (one per inference) would pile up.
        while let Some(message) = bus.pop() {
            if let gst::MessageView::Error(e) = message.view() {
                panic!("the memory run failed: {}", e.error());
            }
        }
        samples.push(common::resident_kib());
    }
    let (frames, inferred) = (
        detect.property::<u64>("frames-in"),
        detect.property::<u64>("frames-inferred"),
    );
    pipeline.set_state(gst::State::Null).expect("stops");
    let first_minute = samples.get(59).or(samples.first()).copied().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    let growth = last as i64 - first_minute as i64;
    println!(
        "\n## 10. Resident memory, bikes.mp4 looped live at 1080p30 through asyncdetect and detectoverlay for {seconds} s\n"
    );
    println!("| frames | inferred | at 1 min (MiB) | at end (MiB) | growth (KiB) | max (MiB) |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {frames} | {inferred} | {:.1} | {:.1} | {growth} | {:.1} |",
        first_minute as f64 / 1024.0,
        last as f64 / 1024.0,
        samples.iter().max().copied().unwrap_or(0) as f64 / 1024.0
    );
    goal(
        format!("memory growth {growth} KiB from minute 1 to the end of {seconds} s, at most 2 MiB"),
        growth <= 2 * 1024,
    );
}

/// What a process keeps after its pipelines stop: each variant runs in a child process of its own,
/// so its first figure is a process that has not loaded ONNX Runtime yet.
/// A row: its name, asyncdetect's properties (`None`: no asyncdetect) and the child's environment.
type Variant<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);

fn after_stop(config: &Config) {
    let (pipelines, seconds, cycles) = if config.full { (12, 10, 4) } else { (2, 1, 2) };
    println!(
        "\n{pipelines} pipelines (bikes.mp4 looped, decoded, 640x360, live 30 fps) run {seconds} s at once, \
         then stop, {cycles} times; resident MiB in a fresh process:\n"
    );
    println!(
        "| variant | before any pipeline | running | after the first stop | after the last stop | then after malloc_trim | of which anonymous | of which files (code, built-in model) | malloc_trim took (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // glibc raises its mmap threshold whenever a large block is freed, after which large blocks
    // come from its per-thread arenas and stay there when freed; the last two rows pin it.
    let fixed_threshold = [("MALLOC_MMAP_THRESHOLD_", "131072")];
    let few_arenas = [("MALLOC_ARENA_MAX", "2")];
    let variants: [Variant; 5] = [
        ("decoding only", None, &[]),
        ("one shared session (default)", Some(""), &[]),
        (
            "a session per pipeline",
            Some("model-instance-id=memory{index}"),
            &[],
        ),
        (
            "one shared session, `MALLOC_MMAP_THRESHOLD_=131072`",
            Some(""),
            &fixed_threshold,
        ),
        ("one shared session, `MALLOC_ARENA_MAX=2`", Some(""), &few_arenas),
    ];
    for (name, properties, environment) in variants {
        let spec = format!("{pipelines};{seconds};{}", properties.unwrap_or("-"));
        let output = std::process::Command::new(std::env::current_exe().expect("this program"))
            .env("ASYNCDETECT_MEMORY", spec)
            .env("MEMORY_CYCLES", cycles.to_string())
            .envs(environment.iter().copied())
            .output()
            .expect("the child runs");
        let text = String::from_utf8_lossy(&output.stdout);
        match text.lines().find_map(|l| l.strip_prefix("MEMORY ")) {
            Some(figures) => println!(
                "| {name} | {} |",
                figures.split(' ').collect::<Vec<_>>().join(" | ")
            ),
            None => println!(
                "| {name} | run failed: {} |",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
        }
    }
}

/// The child of [`after_stop`]: `spec` is `pipelines;seconds;properties` (`-`: no asyncdetect),
/// run `MEMORY_CYCLES` times.
pub fn memory_child(spec: &str) {
    let mut parts = spec.splitn(3, ';');
    let pipelines: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let seconds: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let properties = parts.next().unwrap_or("-");
    let mib = || format!("{:.1}", common::resident_kib() as f64 / 1024.0);
    let before = mib();
    let clip = looping_clip();
    let cycle = || {
        let running: Vec<gst::Pipeline> = (0..pipelines)
            .map(|index| {
                let element = match properties {
                    "-" => "identity".to_string(),
                    extra => format!(
                        "asyncdetect post-messages=false {}",
                        extra.replace("{index}", &index.to_string())
                    ),
                };
                let pipeline = parse_pipeline(&format!(
                    "multifilesrc location={} loop=true \
                       caps=video/x-h264,stream-format=byte-stream,alignment=au,framerate=30/1 ! \
                     h264parse ! avdec_h264 ! videoscale ! video/x-raw,width=640,height=360 ! \
                     {element} ! fakesink sync=true",
                    clip.display()
                ));
                pipeline.set_state(gst::State::Playing).expect("plays");
                pipeline
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        let during = mib();
        for pipeline in &running {
            pipeline.set_state(gst::State::Null).expect("stops");
        }
        drop(running);
        (during, mib())
    };
    let (during, stopped) = cycle();
    // The same again: whether what the first cycle left is reused or added to.
    let cycles: usize = std::env::var("MEMORY_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2);
    let mut stopped_last = stopped.clone();
    for _ in 1..cycles {
        stopped_last = cycle().1;
    }
    let trim_start = Instant::now();
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe { libc::malloc_trim(0) };
    let trim_time = trim_start.elapsed();
    let trimmed = mib();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    println!(
        "MEMORY {before} {during} {stopped} {stopped_last} {trimmed} {:.1} {:.1} {:.1}",
        field("RssAnon:"),
        field("RssFile:"),
        trim_time.as_secs_f64() * 1e3
    );
}
