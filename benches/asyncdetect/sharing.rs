//! Table 4: sharing a frame with the worker against copying it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;

use crate::Config;
use crate::pipelines::*;
use crate::report::*;

/// Sharing a frame with the worker costs a reference; a downstream element that writes in place
/// must then copy the frame, but only while the worker holds it. Copying instead would cost a full
/// frame copy on the streaming thread for every frame.
pub fn table_sharing(config: &Config) {
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
