//! Table 2: the element's inference rate against a plain ONNX Runtime loop.

use gst::prelude::*;

use crate::Config;
use crate::pipelines::*;
use crate::plain_loop::*;
use crate::report::*;
use crate::turns::*;

/// The element's inferences in a pipeline that always has a fresh frame ready (240 fps, more than
/// the model can take); `also` counts the video's frames.
pub fn rate_pipeline(source: &str) -> TurnPipeline {
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

pub fn table_inference_rate(config: &Config) {
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
