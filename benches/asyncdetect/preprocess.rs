//! Table 3: colour conversion and scaling to the model input per 1080p frame.

use std::time::Instant;

use gstasyncdetect::convert::FrameConverter;
use gstasyncdetect::geometry::{Fit, Placement};
use gstasyncdetect::preprocess::ChannelOrder;

use crate::Config;
use crate::pipelines::*;
use crate::report::*;

pub fn table_preprocessing(config: &Config) {
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
