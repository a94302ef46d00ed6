//! Table 5: what `detectoverlay` costs per 1080p frame.

use std::time::Instant;

use crate::Config;
use crate::pipelines::*;
use crate::report::*;

/// `detectoverlay` on 1080p frames carrying ten labelled boxes: per-frame time on the streaming
/// thread (one core), against the 33 ms a 30 fps frame lasts.
pub fn table_overlay(config: &Config) {
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
