//! Table 1: time a buffer spends inside the element on the streaming thread, beside `identity`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::Config;
use crate::pipelines::*;
use crate::report::*;

/// One buffer's passage through an element on the streaming thread.
#[derive(Clone, Copy)]
pub struct Passage {
    time: Duration,
    /// The thread blocked (slept, waited for a lock or a futex) while inside the element.
    blocked: bool,
    /// The scheduler took the CPU away while inside the element (another thread's turn).
    preempted: bool,
}

/// A thread's voluntary and involuntary context switches so far.
pub type ContextSwitches = (i64, i64);

/// This thread's context switches so far.
pub fn context_switches() -> ContextSwitches {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (usage.ru_nvcsw, usage.ru_nivcsw)
}

/// Records each buffer's passage between the sink and src pads of the element named `name`: the
/// time, and whether the streaming thread blocked or was preempted meanwhile (both probes run on
/// the streaming thread, so its context-switch counters tell).
/// Room for `buffers` samples is made first: growing the list in the probe would allocate on the
/// measured thread.
pub fn time_inside(pipeline: &gst::Pipeline, name: &str, buffers: usize) -> Arc<Mutex<Vec<Passage>>> {
    let element = pipeline.by_name(name).expect("element");
    let entered: Arc<Mutex<Option<(Instant, ContextSwitches)>>> = Arc::default();
    let samples = Arc::new(Mutex::new(Vec::with_capacity(buffers)));
    let (entered_in, entered_out, samples_out) = (entered.clone(), entered, samples.clone());
    element
        .static_pad("sink")
        .expect("sink")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            *entered_in.lock().unwrap() = Some((Instant::now(), context_switches()));
            gst::PadProbeReturn::Ok
        });
    element
        .static_pad("src")
        .expect("src")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if let Some((start, (voluntary, involuntary))) = entered_out.lock().unwrap().take() {
                let time = start.elapsed();
                let (voluntary_now, involuntary_now) = context_switches();
                samples_out.lock().unwrap().push(Passage {
                    time,
                    blocked: voluntary_now > voluntary,
                    preempted: involuntary_now > involuntary,
                });
            }
            gst::PadProbeReturn::Ok
        });
    samples
}

/// Per-buffer time on the streaming thread inside asyncdetect (default model) and inside identity,
/// side by side: real content (bikes.mp4, several people and bicycles per frame, looped) decoded
/// and scaled to 1080p `format` upstream, then teed to both, each behind its own queue and so on
/// its own streaming thread. `live`: sinks synchronised to the clock, as a player or camera.
pub fn streaming_costs(format: &str, buffers: u32, live: bool) -> (Vec<Passage>, Vec<Passage>) {
    // Experiments: `STREAMING_PROPERTIES="inference-nice=18"` sets the detector's properties.
    let properties = std::env::var("STREAMING_PROPERTIES").unwrap_or_default();
    let pipeline = parse_pipeline(&format!(
        "multifilesrc location={} loop=true \
           caps=video/x-h264,stream-format=byte-stream,alignment=au,framerate=25/1 ! \
         h264parse ! avdec_h264 ! videoconvert ! videoscale ! \
         video/x-raw,format={format},width=1920,height=1080 ! identity eos-after={buffers} ! \
         tee name=split \
         split. ! queue max-size-buffers=4 ! asyncdetect name=ours {properties} ! fakesink sync={live} \
         split. ! queue max-size-buffers=4 ! identity name=plain ! fakesink sync={live}",
        looping_clip().display()
    ));
    let room = buffers as usize + 16;
    let (ours, plain) = (
        time_inside(&pipeline, "ours", room),
        time_inside(&pipeline, "plain", room),
    );
    run_to_eos(&pipeline);
    let taken = |samples: Arc<Mutex<Vec<Passage>>>| samples.lock().unwrap().clone();
    (taken(ours), taken(plain))
}

pub fn table_streaming(config: &Config) {
    let buffers = if config.full { 3000 } else { 30 };
    println!(
        "\n## 1. Streaming-thread time per buffer, real content at 1080p ({buffers} buffers each, ms)\n"
    );
    println!("bikes.mp4 (several people and bicycles per frame) looped, decoded and scaled to 1080p, teed");
    println!("to asyncdetect (built-in model, running throughout) and to identity side by side. As fast as");
    println!("possible, and live (sinks synchronised to the clock at the clip's 25 fps). `blocked`: buffers");
    println!("during which the streaming thread slept or waited inside the element (a voluntary context");
    println!("switch); `preempted`: buffers during which the scheduler gave its CPU to another thread.\n");
    println!(
        "| input | asyncdetect p50 | p99 | p99.9 | max | blocked | preempted | identity p50 | p99 | p99.9 | max | blocked | preempted |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for live in [false, true] {
        for format in ["NV12", "I420", "RGBx"] {
            let (ours, identity) = streaming_costs(format, buffers, live);
            let input = format!("1080p {format}{}", if live { ", live" } else { "" });
            print_row(&input, &ours, &identity);
            let blocked = ours.iter().filter(|p| p.blocked).count();
            goal(
                format!("streaming thread never blocked inside asyncdetect ({input}): {blocked} buffers"),
                blocked == 0,
            );
            let times = sorted_times(&ours);
            let (p99, max) = (percentile(&times, 0.99), percentile(&times, 1.0));
            goal(
                format!("streaming p99 {} ms ({input}) under 0.1 ms", ms(p99)),
                p99 < Duration::from_micros(100),
            );
            // A miss here with no blocked buffer is the machine's preemption: compare identity's
            // max beside it.
            goal(
                format!(
                    "streaming max {} ms ({input}) under 1 ms (identity beside it: {} ms)",
                    ms(max),
                    ms(percentile(&sorted_times(&identity), 1.0))
                ),
                max < Duration::from_millis(1),
            );
        }
    }
}

pub fn sorted_times(passages: &[Passage]) -> Vec<Duration> {
    let mut times: Vec<Duration> = passages.iter().map(|p| p.time).collect();
    times.sort();
    times
}

pub fn print_row(input: &str, ours: &[Passage], identity: &[Passage]) {
    let columns = |passages: &[Passage]| {
        let times = sorted_times(passages);
        let mut cells = [0.5, 0.99, 0.999, 1.0]
            .map(|p| ms(percentile(&times, p)))
            .to_vec();
        cells.push(passages.iter().filter(|p| p.blocked).count().to_string());
        cells.push(passages.iter().filter(|p| p.preempted).count().to_string());
        cells.join(" | ")
    };
    println!("| {input} | {} | {} |", columns(ours), columns(identity));
}
