//! Table 6: pass-through throughput beside `identity` and without the element.

use crate::Config;
use crate::pipelines::*;
use crate::plain_loop::*;
use crate::report::*;
use crate::turns::*;

/// `videotestsrc ! X ! fakesink sync=false`, counting the buffers that reach the sink.
pub fn throughput_pipeline(element: &str, format: &str, width: u32, height: u32) -> TurnPipeline {
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

pub fn table_throughput(config: &Config) {
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
