//! `tracking=visual`: boxes follow their objects through the frames the model does not see, by
//! image motion, and results that arrive late are carried forward to the newest frame.

mod common;

use common::*;
use gst::prelude::*;
use gstasyncdetect::{AsyncDetectMode, AsyncDetectTracking};

/// Pixels the panning scene moves left each frame.
const SPEED: usize = 4;

/// What one buffer carried for the person: its box in pixels and its ROI (track) id.
#[derive(Debug, Clone, Copy)]
struct Seen {
    frame: u64,
    rect: (u32, u32, u32, u32),
    id: i32,
}

fn person(buffer: &gst::BufferRef, frame: u64) -> Option<Seen> {
    rois(buffer)
        .into_iter()
        .find(|r| r.label == "person")
        .map(|r| Seen {
            frame,
            rect: r.rect,
            id: r.id,
        })
}

/// In sync mode with the model on every third frame, the box on every buffer between two
/// inferences is within 2 px of where the detected box has moved with the scene, the person keeps
/// one id, and no buffer lacks the box.
#[test]
fn boxes_follow_the_motion_between_inferences() {
    init();
    let (photo, _) = photo_frame("RGB", 640, 424);
    let mut h = harness(
        &[
            ("mode", AsyncDetectMode::Sync.to_value()),
            ("interval", 3u32.to_value()),
            ("tracking", AsyncDetectTracking::Visual.to_value()),
        ],
        &pan_caps(),
    );
    let mut seen = Vec::new();
    for k in 0..36u64 {
        h.push(timestamped(&panned(&photo, SPEED * k as usize), k))
            .unwrap();
        let out = h.pull().unwrap();
        seen.push(person(&out, k).unwrap_or_else(|| panic!("frame {k} has no person box")));
    }
    let ids: std::collections::HashSet<i32> = seen.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 1, "{seen:?}");
    let mut worst = 0i64;
    for s in &seen {
        // The model ran on frames 0, 3, 6, ...: the box then is the detection itself.
        let detected = seen[(s.frame - s.frame % 3) as usize];
        let moved = (s.frame - detected.frame) as i64 * SPEED as i64;
        let expected_left = detected.rect.0 as i64 - moved;
        let left_error = (s.rect.0 as i64 - expected_left).abs();
        let width_error = (s.rect.2 as i64 - detected.rect.2 as i64).abs();
        worst = worst.max(left_error).max(width_error);
        assert!(
            left_error <= 2 && width_error <= 2,
            "frame {}: box {:?}, expected left {expected_left} and width {} (detected on frame {})",
            s.frame,
            s.rect,
            detected.rect.2,
            detected.frame
        );
    }
    println!("worst error between inferences: {worst} px");
}

/// A scene cut forgets the tracks at once: no box from the old scene is drawn on the new one,
/// and an object detected after it gets a new id.
#[test]
fn a_scene_cut_forgets_the_tracks() {
    init();
    let (photo, _) = photo_frame("RGB", 640, 424);
    let grey = gst::Buffer::from_mut_slice(vec![90u8; 480 * 424 * 3]);
    let mut h = harness(
        &[
            ("mode", AsyncDetectMode::Sync.to_value()),
            ("interval", 3u32.to_value()),
            ("tracking", AsyncDetectTracking::Visual.to_value()),
        ],
        &pan_caps(),
    );
    let mut ids_before = Vec::new();
    let mut ids_after = Vec::new();
    for k in 0..30u64 {
        let frame = if (10..19).contains(&k) {
            grey.copy()
        } else {
            panned(&photo, SPEED * k as usize)
        };
        h.push(timestamped(&frame, k)).unwrap();
        let out = h.pull().unwrap();
        let found = person(&out, k);
        match k {
            0..10 => ids_before.extend(found.map(|s| s.id)),
            10..19 => assert!(found.is_none(), "frame {k}: a box survived the cut: {found:?}"),
            _ => ids_after.extend(found.map(|s| s.id)),
        }
    }
    assert_eq!(ids_before.len(), 10);
    assert!(
        !ids_after.is_empty(),
        "the person was not found again after the cut"
    );
    assert!(
        ids_after.iter().all(|id| !ids_before.contains(id)),
        "an id from before the cut came back: {ids_before:?} {ids_after:?}"
    );
}

/// In async mode the tracker follows every frame (frames-tracked counts them) and carries each
/// result, which arrives frames after the frame the model saw, forward to the newest: the boxes
/// stay on the moving person, closer to where the model finds it on each frame (sync mode, every
/// frame) than the latest result as the model returned it.
#[test]
fn late_results_are_carried_to_the_newest_frame() {
    init();
    let (photo, _) = photo_frame("RGB", 640, 424);
    let mut sync = harness(&[("mode", AsyncDetectMode::Sync.to_value())], &pan_caps());
    let truth: Vec<Option<f64>> = (0..40u64)
        .map(|k| {
            sync.push(timestamped(&panned(&photo, SPEED * k as usize), k))
                .unwrap();
            person(&sync.pull().unwrap(), k).map(|s| s.rect.0 as f64)
        })
        .collect();
    let run = |tracking: AsyncDetectTracking| {
        let (mut h, bus, element) = harness_with_bus(&[("tracking", tracking.to_value())], &pan_caps());
        // The model loaded and its first result in: from now on results come as fast as it runs.
        h.push(timestamped(&panned(&photo, 0), 0)).unwrap();
        h.pull().unwrap();
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Element])
            .expect("a first result");
        let mut errors = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for k in 1..40u64 {
            // Frames at their rate, so the model sees some of them; its results arrive frames late.
            std::thread::sleep(std::time::Duration::from_millis(33));
            h.push(timestamped(&panned(&photo, SPEED * k as usize), k))
                .unwrap();
            let out = h.pull().unwrap();
            if tracking == AsyncDetectTracking::Visual {
                // One frame at a time: the tracker has followed this one before the next comes.
                let tracked = || element.property::<u64>("frames-tracked") > k;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !tracked() && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                assert!(tracked(), "frame {k} was not tracked");
            }
            if let (Some(seen), Some(truth)) = (person(&out, k), truth[k as usize]) {
                errors.push((seen.rect.0 as f64 - truth).abs());
                ids.insert(seen.id);
            }
        }
        (errors, ids)
    };
    let (visual, ids) = run(AsyncDetectTracking::Visual);
    let (plain, _) = run(AsyncDetectTracking::None);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "mean left-edge error: visual {:.1} px over {} buffers, none {:.1} px over {}",
        mean(&visual),
        visual.len(),
        mean(&plain),
        plain.len()
    );
    assert!(
        visual.len() >= 30,
        "too few buffers carried the person: {visual:?}"
    );
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(
        mean(&visual) < mean(&plain),
        "visual tracking did not reduce the lag"
    );
}

/// detectblur behind a visual tracker masks the person where they are on every frame, also on
/// the frames the model does not see: the strip along the person's leading edge, which a box left
/// where the model last saw it would miss, is masked.
#[test]
fn the_mask_stays_on_the_moving_person() {
    init();
    let (photo, _) = photo_frame("RGB", 640, 424);
    let chain = gst::parse::bin_from_description(
        "asyncdetect mode=sync interval=3 tracking=visual ! detectblur classes=person",
        true,
    )
    .unwrap();
    let mut h = gst_check::Harness::with_element(&chain, Some("sink"), Some("src"));
    h.set_src_caps(pan_caps());
    let mut detected = None;
    for k in 0..24u64 {
        let frame = timestamped(&panned(&photo, SPEED * k as usize), k);
        h.push(frame.clone()).unwrap();
        let out = h.pull().unwrap();
        let seen = person(&out, k).unwrap_or_else(|| panic!("frame {k} has no person box"));
        if k % 3 == 0 {
            detected = Some(seen);
        }
        let detected = detected.expect("the first frame is inferred");
        // Where the person's box is now: the detection moved with the scene.
        let left = detected.rect.0 as i64 - ((k - detected.frame) * SPEED as u64) as i64;
        let (top, bottom) = (detected.rect.1 + 20, detected.rect.1 + detected.rect.3 - 20);
        let strip = (left + 1)..(left + 6);
        let changed = changed_pixels(&frame, &out, &pan_caps());
        let masked = changed
            .iter()
            .filter(|&&(x, y)| strip.contains(&(x as i64)) && y >= top && y < bottom)
            .count();
        let area = 5 * (bottom - top) as usize;
        assert!(
            masked * 10 >= area * 8,
            "frame {k}: {masked} of the {area} pixels along the person's leading edge masked"
        );
    }
}
