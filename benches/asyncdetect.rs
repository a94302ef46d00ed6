//! Measures, side by side in one run, what `asyncdetect` costs and delivers on this machine:
//!
//! 1. time a buffer spends inside the element on the streaming thread (sink pad to src pad),
//!    against `identity` in the same place, per resolution and format;
//! 2. the element's inference rate against a plain ONNX Runtime loop on the same tensor, model and
//!    thread settings;
//! 3. pre-processing (colour conversion + scaling to the model input) per 1080p frame per format;
//! 4. what sharing a frame with the worker costs downstream against copying it;
//! 5. what `detectoverlay` costs per 1080p frame.
//!
//! ```text
//! cargo bench --bench asyncdetect                # full run, prints markdown tables
//! cargo bench --bench asyncdetect -- preprocess  # only some: streaming, rate, preprocess, sharing, overlay
//! ```
//!
//! `cargo test --all-targets` runs a shortened variant (a few frames each) to keep it working; it
//! prints the same tables but its figures are not meaningful.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstasyncdetect::convert::FrameConverter;
use gstasyncdetect::preprocess::ChannelOrder;

/// A table of the report.
type Table = fn(&Config);

struct Config {
    full: bool,
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

/// Per-buffer time inside `element` (a launch fragment) on the streaming thread.
fn streaming_cost(
    element: &str,
    format: &str,
    width: u32,
    height: u32,
    buffers: u32,
    live: bool,
) -> Vec<Duration> {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live={live} num-buffers={buffers} ! \
         video/x-raw,format={format},width={width},height={height},framerate=30/1 ! \
         {element} name=under_test ! fakesink sync={live}"
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let under_test = pipeline.by_name("under_test").expect("element");
    let entered: Arc<Mutex<Option<Instant>>> = Arc::default();
    let samples: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (entered_in, entered_out, samples_out) = (entered.clone(), entered.clone(), samples.clone());
    under_test
        .static_pad("sink")
        .expect("sink")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            *entered_in.lock().unwrap() = Some(Instant::now());
            gst::PadProbeReturn::Ok
        });
    under_test
        .static_pad("src")
        .expect("src")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if let Some(start) = entered_out.lock().unwrap().take() {
                samples_out.lock().unwrap().push(start.elapsed());
            }
            gst::PadProbeReturn::Ok
        });
    run_to_eos(&pipeline);
    let mut samples = samples.lock().unwrap().clone();
    samples.sort();
    samples
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
    let buffers = if config.full { 300 } else { 10 };
    println!("\n## 1. Streaming-thread time per buffer ({buffers} buffers each, ms)\n");
    println!("Source as fast as possible (the worker is always busy) and live at 30 fps (the worker is");
    println!("woken for every frame).\n");
    println!("| input | asyncdetect p50 | p99 | max | identity p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (width, height) in [(640, 480), (1280, 720), (1920, 1080)] {
        for format in ["I420", "NV12", "RGBx"] {
            let ours = streaming_cost("asyncdetect", format, width, height, buffers, false);
            let identity = streaming_cost("identity", format, width, height, buffers, false);
            print_row(&format!("{width}x{height} {format}"), &ours, &identity);
            if width == 1920 {
                let ours = streaming_cost("asyncdetect", format, width, height, buffers / 3, true);
                let identity = streaming_cost("identity", format, width, height, buffers / 3, true);
                print_row(&format!("{width}x{height} {format}, live"), &ours, &identity);
            }
        }
    }
}

fn print_row(input: &str, ours: &[Duration], identity: &[Duration]) {
    println!(
        "| {input} | {} | {} | {} | {} | {} | {} |",
        ms(percentile(ours, 0.5)),
        ms(percentile(ours, 0.99)),
        ms(percentile(ours, 1.0)),
        ms(percentile(identity, 0.5)),
        ms(percentile(identity, 0.99)),
        ms(percentile(identity, 1.0)),
    );
}

/// Inferences per second of the element in a pipeline that always has a fresh frame ready.
fn element_rate(source: &str, seconds: f64) -> (f64, f64) {
    let pipeline = gst::parse::launch(&format!(
        "{source} ! video/x-raw,format=I420,width=640,height=480,framerate=240/1 ! \
         asyncdetect name=d ! fakesink sync=true"
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let detect = pipeline.by_name("d").expect("d");
    pipeline.set_state(gst::State::Playing).expect("plays");
    while detect.property::<u64>("frames-inferred") < 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (start, start_count, start_frames) = (
        Instant::now(),
        detect.property::<u64>("frames-inferred"),
        detect.property::<u64>("frames-in"),
    );
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let elapsed = start.elapsed().as_secs_f64();
    let inferred = detect.property::<u64>("frames-inferred") - start_count;
    let frames = detect.property::<u64>("frames-in") - start_frames;
    pipeline.set_state(gst::State::Null).expect("stops");
    (inferred as f64 / elapsed, frames as f64 / elapsed)
}

/// The physical limit: the same model and session settings in a bare loop on one tensor.
fn plain_loop_rate(seconds: f64, spinning: bool) -> f64 {
    let environment = gstasyncdetect::engine::environment(None).expect("ONNX Runtime");
    let mut session = ort::session::Session::builder(&environment)
        .and_then(|b| Ok(b.with_intra_threads(0)?))
        .and_then(|b| Ok(b.with_intra_op_spinning(spinning)?))
        .and_then(|b| Ok(b.with_inter_op_spinning(spinning)?))
        .expect("builder")
        .commit_from_memory(gstasyncdetect::engine::DEFAULT_MODEL)
        .expect("session");
    let tensor: Vec<u8> = (0..300 * 300 * 3).map(|i| (i % 251) as u8).collect();
    let mut run = || {
        let input =
            ort::value::TensorRef::from_array_view(([1usize, 300, 300, 3], tensor.as_slice())).unwrap();
        let outputs = session.run(ort::inputs![input]).expect("runs");
        std::hint::black_box(outputs[2].try_extract_array::<f32>().unwrap().sum());
    };
    run();
    let start = Instant::now();
    let mut count = 0;
    while start.elapsed().as_secs_f64() < seconds {
        run();
        count += 1;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn table_inference_rate(config: &Config) {
    let seconds = if config.full { 10.0 } else { 0.5 };
    let plain = plain_loop_rate(seconds, false);
    let plain_spinning = plain_loop_rate(seconds, true);
    let (element, video_fps) = element_rate("videotestsrc pattern=ball", seconds);
    let (element_frozen, frozen_fps) = element_rate(
        "videotestsrc num-buffers=1 ! video/x-raw,width=640,height=480 ! imagefreeze",
        seconds,
    );
    println!(
        "\n## 2. Inference rate, 640x480 I420 source at 240 fps, more than the model can take ({seconds} s each)\n"
    );
    println!("| measurement | inferences/s | ratio to plain loop |");
    println!("|---|---|---|");
    println!("| plain ONNX Runtime loop, same settings (spinning off) | {plain:.1} | 1.00 |");
    println!(
        "| plain loop, ONNX Runtime defaults (spinning on) | {plain_spinning:.1} | {:.2} |",
        plain_spinning / plain
    );
    println!(
        "| asyncdetect, videotestsrc drawing each frame (video ran at {video_fps:.0} fps) | {element:.1} | {:.2} |",
        element / plain
    );
    println!(
        "| asyncdetect, imagefreeze repeating one frame (video ran at {frozen_fps:.0} fps) | {element_frozen:.1} | {:.2} |",
        element_frozen / plain
    );
}

fn frame_1080p(format: &str) -> (gst::Buffer, gst_video::VideoInfo) {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,format={format},width=1920,height=1080,framerate=30/1 ! \
         appsink name=sink"
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
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
        let mut convert_times = Vec::new();
        let mut fill_times = Vec::new();
        let mut tensor = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let (frame, stride) = converter.convert(buffer.clone(), &info).expect("converts");
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
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers={buffers} {source} ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 ! \
             asyncdetect name=d ! fakesink name=sink sync=true"
        ))
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
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

fn main() {
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
    let tables: [(&str, Table); 5] = [
        ("streaming", table_streaming),
        ("rate", table_inference_rate),
        ("preprocess", table_preprocessing),
        ("sharing", table_sharing),
        ("overlay", table_overlay),
    ];
    for (name, table) in tables {
        if chosen.is_empty() || chosen.iter().any(|c| c == name) {
            table(&config);
        }
    }
}
