//! Tables 7 and 8: a live source into a clock-synchronised sink, and how old the attached results are.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::Config;
use crate::pipelines::*;
use crate::report::*;

/// What reached a clock-synchronised sink from a live source in `seconds`.
pub struct LiveRun {
    expected: u64,
    pub rendered: u64,
    late: u64,
    worst_gap: Duration,
    ages: Vec<Duration>,
    pub inferred: u64,
    latency: Duration,
}

/// A live 1080p source at `fps` (the test photo, so there is something to detect) through
/// `element` into `fakesink sync=true max-lateness=20ms`, as a video sink would drop late frames.
pub fn live_run(element: &str, fps: u32, seconds: f64) -> LiveRun {
    let middle = if element.is_empty() {
        String::new()
    } else {
        format!("{element} name=detect ! ")
    };
    let photo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/person.jpg");
    let pipeline = parse_pipeline(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=I420,width=1920,height=1080 ! \
         imagefreeze is-live=true ! video/x-raw,framerate={fps}/1 ! {middle}\
         fakesink name=sink sync=true max-lateness=20000000 signal-handoffs=true",
        photo.display()
    ));
    #[derive(Default)]
    struct Seen {
        rendered: u64,
        arrived: u64,
        last: Option<Instant>,
        worst_gap: Duration,
        ages: Vec<Duration>,
    }
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let sink = pipeline.by_name("sink").expect("sink");
    let arrivals = seen.clone();
    sink.static_pad("sink")
        .expect("pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let mut seen = arrivals.lock().unwrap();
            seen.arrived += 1;
            let now = Instant::now();
            if let Some(last) = seen.last.replace(now) {
                seen.worst_gap = seen.worst_gap.max(now - last);
            }
            if let Some(buffer) = info.buffer()
                && let Some(meta) = buffer.meta::<gst_video::VideoRegionOfInterestMeta>()
                && let Some(age) = meta.param("detection").and_then(|d| d.get::<i64>("age").ok())
            {
                seen.ages.push(Duration::from_nanos(age.max(0) as u64));
            }
            gst::PadProbeReturn::Ok
        });
    let renders = seen.clone();
    sink.connect("handoff", false, move |_| {
        renders.lock().unwrap().rendered += 1;
        None
    });
    pipeline.set_state(gst::State::Playing).expect("plays");
    // Count from the first frame on, for `seconds`.
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().arrived == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    {
        let mut seen = seen.lock().unwrap();
        *seen = Seen {
            last: seen.last,
            ..Default::default()
        };
    }
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let detect = pipeline.by_name("detect");
    let inferred = detect
        .as_ref()
        .map_or(0, |d| d.property::<u64>("frames-inferred"));
    let latency = detect
        .as_ref()
        .map_or(0, |d| d.property::<u64>("inference-latency"));
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    pipeline.set_state(gst::State::Null).expect("stops");
    let mut ages = seen.ages;
    ages.sort();
    LiveRun {
        expected: (seconds * fps as f64).round() as u64,
        rendered: seen.rendered,
        // A buffer between the probe and the render when counting started is rendered, not arrived.
        late: seen.arrived.saturating_sub(seen.rendered),
        worst_gap: seen.worst_gap,
        ages,
        inferred,
        latency: Duration::from_nanos(latency),
    }
}

pub fn table_live(config: &Config) {
    let seconds = if config.full { 60.0 } else { 2.0 };
    println!("\n## 7. Live 1080p source into a clock-synchronised sink ({seconds} s each)\n");
    println!("Late: arrived after its time + 20 ms and dropped by the sink (as a video sink would).\n");
    println!(
        "| source | element | expected | rendered on time | late, dropped | worst gap (ms) | inferences/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut freshness = Vec::new();
    for fps in [30, 60] {
        for (name, element) in [
            ("none", ""),
            ("asyncdetect", "asyncdetect"),
            ("asyncdetect mode=sync", "asyncdetect mode=sync"),
        ] {
            let run = live_run(element, fps, seconds);
            println!(
                "| 1080p{fps} | {name} | {} | {} | {} | {} | {:.1} |",
                run.expected,
                run.rendered,
                run.late,
                ms(run.worst_gap),
                run.inferred as f64 / seconds
            );
            if name == "asyncdetect" {
                let frame = Duration::from_secs_f64(1.0 / fps as f64);
                goal(
                    format!("live 1080p{fps}: no late frame ({})", run.late),
                    run.late == 0,
                );
                goal(
                    format!(
                        "live 1080p{fps}: worst gap {} ms under two frames",
                        ms(run.worst_gap)
                    ),
                    run.worst_gap < 2 * frame,
                );
                freshness.push((fps, run));
            }
        }
    }
    println!(
        "\n## 8. Freshness: age of the attached result (frame time of the buffer minus that of the analysed frame)\n"
    );
    println!("| source | age p50 (ms) | age p99 (ms) | inference latency (ms) | latency + 1 frame (ms) |");
    println!("|---|---|---|---|---|");
    for (fps, run) in freshness {
        let frame = Duration::from_secs_f64(1.0 / fps as f64);
        let p99 = percentile(&run.ages, 0.99);
        println!(
            "| 1080p{fps} | {} | {} | {} | {} |",
            ms(percentile(&run.ages, 0.5)),
            ms(p99),
            ms(run.latency),
            ms(run.latency + frame)
        );
        goal(
            format!(
                "1080p{fps}: p99 age {} ms <= latency + 1 frame {} ms",
                ms(p99),
                ms(run.latency + frame)
            ),
            p99 <= run.latency + frame,
        );
    }
}
