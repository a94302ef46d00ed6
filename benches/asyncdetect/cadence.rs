//! Table 11, second part: tracking replayed frame by frame at fixed cadences, without timing
//! noise. From the sync-mode results, the model is taken to see every `period`-th frame and to
//! deliver its result `period` frames later (one busy worker, as a model at a `period`-th of the
//! video's rate does). Each frame then gets the newest delivered result as it is (none), moved
//! forward by the IoU tracker's velocities (predict), or followed through the frames by the visual
//! tracker, which carries each result from its frame to the present (visual; the element's own
//! code, on the clip's frames). The visual tracker's cost is timed per frame, on the clip and on
//! 1080p frames, grey copy included.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstasyncdetect::detection::{Detection, NormalizedBox};
use gstasyncdetect::track::{Tracker, predict};
use gstasyncdetect::visual::{VisualSettings, VisualTracker};

use crate::Config;
use crate::common;
use crate::pipelines::{appsink, parse_pipeline};
use crate::report::{goal, ms, percentile};
use crate::tracking::{PersonBoxes, clip_path, id_switches};

/// Every frame of `clip` as `caps` raw video, with its timestamp.
fn decoded(clip: &str, caps: &str) -> Vec<(u64, gst::Buffer, gst_video::VideoInfo)> {
    let pipeline = parse_pipeline(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! videoscale ! {caps} ! appsink name=sink sync=false",
        clip_path(clip).display()
    ));
    let sink = appsink(&pipeline);
    pipeline.set_state(gst::State::Playing).expect("plays");
    let mut frames = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let (Some(buffer), Some(caps)) = (sample.buffer_owned(), sample.caps()) else {
            continue;
        };
        let info = gst_video::VideoInfo::from_caps(caps).expect("video caps");
        let pts = buffer.pts().map_or(0, |t| t.nseconds());
        frames.push((pts, buffer, info));
    }
    pipeline.set_state(gst::State::Null).expect("stops");
    frames
}

fn person(b: &[f64; 4]) -> Detection {
    Detection {
        class_id: 0,
        label: "person".into(),
        confidence: 0.9,
        bbox: NormalizedBox {
            x_min: b[0] as f32,
            y_min: b[1] as f32,
            x_max: b[2] as f32,
            y_max: b[3] as f32,
        },
    }
}

fn as_array(b: &NormalizedBox) -> [f64; 4] {
    [b.x_min as f64, b.y_min as f64, b.x_max as f64, b.y_max as f64]
}

/// An inferred frame's index, time and IoU-tracked boxes (with velocities and ids).
type Delivered = (
    usize,
    f64,
    Vec<(NormalizedBox, gstasyncdetect::track::Velocity, u32)>,
);

/// Per frame, the boxes (with ids) each way of following gives it.
struct Replay {
    none: Vec<PersonBoxes>,
    predict: Vec<PersonBoxes>,
    visual: Vec<PersonBoxes>,
    /// The visual tracker's time per frame (grey copy, following, taking in results).
    visual_time: Vec<Duration>,
}

fn replay(
    truth: &[(u64, PersonBoxes)],
    frames: &[(u64, gst::Buffer, gst_video::VideoInfo)],
    period: usize,
) -> Replay {
    let seconds = |index: usize| truth[index].0 as f64 / 1e9;
    let mut iou_tracker = Tracker::default();
    let mut visual = VisualTracker::new(VisualSettings::default());
    // Per inferred frame: its index, time and IoU-tracked boxes (with ids and velocities).
    let mut delivered: Vec<Delivered> = Vec::new();
    let mut replay = Replay {
        none: Vec::new(),
        predict: Vec::new(),
        visual: Vec::new(),
        visual_time: Vec::new(),
    };
    for (index, (pts, _)) in truth.iter().enumerate() {
        if index % period == 0 {
            let detections = truth[index].1.iter().map(|(b, _)| person(b)).collect();
            let tracked = iou_tracker
                .update(detections, seconds(index))
                .into_iter()
                .map(|t| (t.detection.bbox, t.velocity, t.track_id))
                .collect();
            delivered.push((index, seconds(index), tracked));
        }
        let started = Instant::now();
        let (_, buffer, info) = &frames[index];
        visual
            .step(
                seconds(index),
                gstasyncdetect::grey_frame(buffer, info).expect("grey copy"),
            )
            .expect("followed");
        if index >= period && (index - period).is_multiple_of(period) {
            let seen = index - period;
            let detections = truth[seen].1.iter().map(|(b, _)| person(b)).collect();
            visual.detect(seconds(seen), detections).expect("carried");
        }
        replay.visual_time.push(started.elapsed());
        replay.visual.push(
            visual
                .objects()
                .iter()
                .map(|o| (as_array(&o.detection.bbox), o.id as i32))
                .collect(),
        );
        // The newest result whose inference finished by this frame.
        let newest = delivered.iter().rev().find(|(i, _, _)| i + period <= index);
        let ahead = newest.map_or(0.0, |(_, at, _)| (*pts as f64 / 1e9 - at).min(1.0));
        let boxes = |moved: bool| -> PersonBoxes {
            newest.map_or_else(Vec::new, |(_, _, tracked)| {
                tracked
                    .iter()
                    .map(|(b, v, id)| {
                        (
                            as_array(&if moved { predict(b, v, ahead) } else { *b }),
                            *id as i32,
                        )
                    })
                    .collect()
            })
        };
        replay.none.push(boxes(false));
        replay.predict.push(boxes(true));
    }
    replay
}

/// Mean IoU of each per-frame box with the best box `seen` gives its frame, over the boxes
/// `counted` keeps.
fn mean_iou(truth: &[(u64, PersonBoxes)], seen: &[PersonBoxes], counted: &[Vec<bool>]) -> f64 {
    let (mut total, mut count) = (0.0, 0);
    for (((_, truths), attached), counted) in truth.iter().zip(seen).zip(counted) {
        for ((t, _), counted) in truths.iter().zip(counted) {
            if *counted {
                total += attached
                    .iter()
                    .map(|(b, _)| common::iou(*t, *b))
                    .fold(0.0, f64::max);
                count += 1;
            }
        }
    }
    total / count.max(1) as f64
}

/// Per frame and box, whether the object was already on the frame of the newest result delivered
/// by then (followed back from frame to frame by overlap): the boxes any tracker could cover. The
/// others (objects that appeared since) have no result yet however well one tracks.
fn coverable(truth: &[(u64, PersonBoxes)], period: usize) -> Vec<Vec<bool>> {
    truth
        .iter()
        .enumerate()
        .map(|(index, (_, boxes))| {
            let Some(seen) = index.checked_sub(period).map(|last| last - last % period) else {
                return vec![false; boxes.len()];
            };
            let mut followed: Vec<[f64; 4]> = truth[seen].1.iter().map(|(b, _)| *b).collect();
            for (_, next) in &truth[seen + 1..=index] {
                followed = next
                    .iter()
                    .map(|(b, _)| *b)
                    .filter(|b| followed.iter().any(|f| common::iou(*f, *b) > 0.3))
                    .collect();
            }
            boxes.iter().map(|(b, _)| followed.contains(b)).collect()
        })
        .collect()
}

pub fn table_cadence(config: &Config, truths: &[(&str, BTreeMap<u64, PersonBoxes>)]) {
    println!("\nReplayed at fixed cadences (deterministic, from the sync-mode results above):\n");
    println!(
        "| clip | model sees | result arrives | mean IoU, none | predict | visual | boxes a result could cover | mean IoU on those, none | predict | visual | id switches, predict | visual | visual tracker per frame, mean / p99 (ms) | boxes compared |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (clip, truth) in truths {
        let frames = decoded(clip, "video/x-raw,format=GRAY8");
        let truth: Vec<(u64, PersonBoxes)> = truth.iter().map(|(pts, boxes)| (*pts, boxes.clone())).collect();
        assert_eq!(
            frames.len(),
            truth.len(),
            "{clip}: decoded frames and results differ"
        );
        let compared: usize = truth.iter().map(|(_, boxes)| boxes.len()).sum();
        for period in [2usize, 3, 4, 6] {
            let replay = replay(&truth, &frames, period);
            let all: Vec<Vec<bool>> = truth.iter().map(|(_, boxes)| vec![true; boxes.len()]).collect();
            let coverable = coverable(&truth, period);
            let iou = |seen: &[PersonBoxes], counted: &[Vec<bool>]| mean_iou(&truth, seen, counted);
            let (none, predict, visual) = (
                iou(&replay.none, &all),
                iou(&replay.predict, &all),
                iou(&replay.visual, &all),
            );
            let (none_c, predict_c, visual_c) = (
                iou(&replay.none, &coverable),
                iou(&replay.predict, &coverable),
                iou(&replay.visual, &coverable),
            );
            let share = coverable.iter().flatten().filter(|c| **c).count() as f64 / compared.max(1) as f64;
            let (predict_switches, visual_switches) = (
                id_switches(replay.predict.iter()),
                id_switches(replay.visual.iter()),
            );
            let mut times = replay.visual_time.clone();
            times.sort();
            let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
            println!(
                "| {clip} | every {period} frames | {period} frames later | {none:.3} | {predict:.3} | {visual:.3} | {:.0} % | {none_c:.3} | {predict_c:.3} | {visual_c:.3} | {predict_switches} | {visual_switches} | {} / {} | {compared} |",
                share * 100.0,
                ms(mean),
                ms(percentile(&times, 0.99))
            );
            if config.full && *clip == "bikes.mp4" {
                match period {
                    3 => goal(
                        format!(
                            "visual tracking, model every 3rd frame 3 frames late: mean IoU {visual:.3} >= 0.8"
                        ),
                        visual >= 0.8,
                    ),
                    6 => goal(
                        format!(
                            "visual tracking, model every 6th frame 6 frames late: mean IoU {visual:.3} >= 0.7"
                        ),
                        visual >= 0.7,
                    ),
                    _ => {}
                }
                goal(
                    format!(
                        "visual tracking every {period} frames: id switches {visual_switches} <= predict's {predict_switches}"
                    ),
                    visual_switches <= predict_switches,
                );
            }
        }
    }
    cost_1080p(config, truths);
}

/// The visual tracker's cost per 1080p frame: bikes.mp4 scaled to 1920x1080 I420, the model every
/// third frame three frames late; grey copy, following and taking in results, on one thread.
fn cost_1080p(config: &Config, truths: &[(&str, BTreeMap<u64, PersonBoxes>)]) {
    let Some((clip, truth)) = truths.first() else {
        return;
    };
    let frames = decoded(clip, "video/x-raw,format=I420,width=1920,height=1080");
    let truth: Vec<(u64, PersonBoxes)> = truth.iter().map(|(pts, boxes)| (*pts, boxes.clone())).collect();
    let replay = replay(&truth, &frames, 3);
    let mut times = replay.visual_time;
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
    let frame = Duration::from_secs_f64(1.0 / 30.0);
    println!(
        "\nVisual tracker per 1920x1080 I420 frame ({clip} scaled, model every 3rd frame): mean {} ms, p99 {} ms, max {} ms; \
         at 30 fps {:.1} % of one core.",
        ms(mean),
        ms(percentile(&times, 0.99)),
        ms(times.last().copied().unwrap_or_default()),
        100.0 * mean.as_secs_f64() / frame.as_secs_f64()
    );
    if config.full {
        goal(
            format!("visual tracker per 1080p frame: mean {} ms < 2 ms", ms(mean)),
            mean < Duration::from_millis(2),
        );
    }
}
