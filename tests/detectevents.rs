//! `detectevents`: events from tracked objects, on synthetic tracks with known crossings and on a
//! real clip through `asyncdetect`.

mod common;

use common::tracked::{events_harness, tracked_caps as caps, tracked_frame as frame};
use common::*;
use gst::prelude::*;

/// Every `detectevents` message on `bus`: (event, object id, zone or line, direction).
fn posted(bus: &gst::Bus) -> Vec<(String, u32, String, String)> {
    let mut found = Vec::new();
    while let Some(message) = bus.pop_filtered(&[gst::MessageType::Element]) {
        let Some(s) = message.structure().filter(|s| s.name() == "detectevents") else {
            continue;
        };
        let text = |name: &str| s.get::<String>(name).unwrap_or_default();
        let place = if s.has_field("zone") {
            text("zone")
        } else {
            text("line")
        };
        found.push((
            text("event"),
            s.get::<u32>("object-id").unwrap(),
            place,
            text("direction"),
        ));
    }
    found
}

fn line_counts(buffer: &gst::BufferRef) -> Vec<(String, u64, u64)> {
    let meta =
        gst::meta::CustomMeta::from_buffer(buffer, gstasyncdetect::DETECT_EVENTS_META).expect("events meta");
    meta.structure()
        .get::<gst::List>("lines")
        .unwrap()
        .iter()
        .map(|v| {
            let s = v.get::<gst::Structure>().unwrap();
            (
                s.get::<String>("line").unwrap(),
                s.get::<u64>("in").unwrap(),
                s.get::<u64>("out").unwrap(),
            )
        })
        .collect()
}

/// Two people cross a line in opposite directions and a third jitters on it: each crossing is
/// reported once with its direction, the jitter not at all, and the buffers carry the totals.
#[test]
fn crossings_are_counted_once_with_their_direction() {
    init();
    let (mut h, bus, _) = events_harness(&[("lines", "gate:0.1,0.5 0.9,0.5".to_value())]);
    let jitter = [0.49, 0.51, 0.495, 0.505, 0.515, 0.485, 0.5];
    let mut last = None;
    for k in 0..20u64 {
        let down = 0.3 + 0.02 * k as f64;
        let up = 0.7 - 0.02 * k as f64;
        h.push(frame(
            k,
            &[
                (1, 0.3, down),
                (2, 0.6, up),
                (3, 0.8, jitter[k as usize % jitter.len()]),
            ],
        ))
        .unwrap();
        last = Some(h.pull().unwrap());
    }
    let crossings: Vec<_> = posted(&bus).into_iter().filter(|e| e.0 == "cross").collect();
    assert_eq!(
        crossings,
        vec![
            ("cross".into(), 1, "gate".into(), "in".into()),
            ("cross".into(), 2, "gate".into(), "out".into())
        ]
    );
    assert_eq!(line_counts(&last.unwrap()), vec![("gate".into(), 1, 1)]);
}

/// A person walks into a zone, stays and walks out: enter, then leave with the time inside; the
/// zone's live count is 1 while they are in and the object ends after `lost-time` unseen.
#[test]
fn zones_report_enter_leave_and_counts() {
    init();
    let (mut h, bus, element) = events_harness(&[
        ("zones", "yard:0.0,0.6 1.0,0.6 1.0,1.0 0.0,1.0".to_value()),
        ("lost-time", 500_000_000u64.to_value()),
    ]);
    let path = [0.4, 0.5, 0.7, 0.8, 0.8, 0.8, 0.5, 0.4];
    for (k, y) in path.iter().enumerate() {
        h.push(frame(k as u64, &[(5, 0.5, *y)])).unwrap();
        let out = h.pull().unwrap();
        let meta = gst::meta::CustomMeta::from_buffer(&out, gstasyncdetect::DETECT_EVENTS_META).unwrap();
        let inside: u32 = meta
            .structure()
            .get::<gst::List>("zones")
            .unwrap()
            .iter()
            .map(|v| v.get::<gst::Structure>().unwrap().get::<u32>("count").unwrap())
            .sum();
        assert_eq!(inside, u32::from((2..6).contains(&k)), "frame {k}");
    }
    // Unseen for longer than lost-time: it ends.
    for k in 8..16u64 {
        h.push(frame(k, &[])).unwrap();
        h.pull().unwrap();
    }
    let events: Vec<String> = posted(&bus)
        .into_iter()
        .map(|e| format!("{} {}", e.0, e.2).trim().to_string())
        .collect();
    assert_eq!(events, ["start", "enter yard", "leave yard", "end"]);
    assert_eq!(element.property::<u64>("events"), 4);
}

/// A malformed zone set before the start fails the start naming the mistake; set while running
/// it is refused with a warning and the previous zones stay.
#[test]
fn malformed_zones_are_explained() {
    init();
    let element = gst::ElementFactory::make("detectevents")
        .property("zones", "yard:0.1,0.1 0.5,0.5")
        .build()
        .unwrap();
    let pipeline = gst::Pipeline::new();
    let source = gst::ElementFactory::make("videotestsrc")
        .property("num-buffers", 1)
        .build()
        .unwrap();
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add_many([&source, &element, &sink]).unwrap();
    gst::Element::link_many([&source, &element, &sink]).unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let error = wait_for_error(&pipeline.bus().unwrap(), 10).expect("an error");
    assert!(
        error.contains("zones") && error.contains("at least 3 points"),
        "{error}"
    );
    pipeline.set_state(gst::State::Null).unwrap();

    let (mut h, bus, element) = events_harness(&[("zones", "yard:0,0 1,0 1,1".to_value())]);
    h.push(frame(0, &[])).unwrap();
    element.set_property("zones", "yard:0,0");
    assert_eq!(element.property::<String>("zones"), "yard:0,0 1,0 1,1");
    let warnings = warnings(&bus);
    assert!(
        warnings.iter().any(|w| w.contains("at least 3 points")),
        "{warnings:?}"
    );
}

/// On a real clip, people tracked by asyncdetect crossing the middle of the picture are reported,
/// and the totals on the last buffer agree with the crossing events.
#[test]
fn people_crossing_on_a_real_clip() {
    init();
    let clip = demo_clip();
    let (pipeline, sink) = playing_with_appsink(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! asyncdetect mode=sync tracking=iou ! \
         detectevents lines=\"middle:0.5,0.0 0.5,1.0\" ! appsink name=sink sync=false",
        clip.display()
    ));
    let mut last = None;
    while let Ok(sample) = sink.pull_sample() {
        last = sample.buffer_owned();
    }
    let bus = pipeline.bus().unwrap();
    let mut crossings = (0u64, 0u64);
    let mut labels = std::collections::BTreeSet::new();
    while let Some(message) = bus.pop_filtered(&[gst::MessageType::Element]) {
        if let Some(s) = message.structure().filter(|s| s.name() == "detectevents")
            && s.get::<String>("event").unwrap() == "cross"
        {
            labels.insert(s.get::<String>("label").unwrap());
            match s.get::<String>("direction").unwrap().as_str() {
                "in" => crossings.0 += 1,
                _ => crossings.1 += 1,
            }
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        labels.contains("person"),
        "no person crossed: {labels:?} {crossings:?}"
    );
    assert_eq!(
        line_counts(&last.unwrap()),
        vec![("middle".into(), crossings.0, crossings.1)]
    );
}

/// A grey frame of a single level with the tracked people of `tracked_frame`.
fn grey_frame(index: u64, people: &[(i32, f64, f64)]) -> gst::Buffer {
    let mut buffer = frame(index, people);
    buffer.get_mut().unwrap().map_writable().unwrap().fill(90);
    buffer
}

/// detectoverlay draws the zones and lines detectevents judges, with their live counts: the
/// pixels along the line change, and the line's tab changes when somebody crosses.
#[test]
fn detectoverlay_draws_zones_lines_and_counts() {
    init();
    let run = |show_events: bool, people: &[(i32, f64, f64)], frames: u64| {
        let mut h = gst_check::Harness::new_parse(&format!(
            "detectevents lines=\"gate:0.1,0.5 0.9,0.5\" zones=\"left:0.05,0.05 0.3,0.05 0.3,0.3 0.05,0.3\" ! \
             detectoverlay show-events={show_events} show-label=false show-confidence=false show-id=false"
        ));
        h.set_src_caps(caps());
        let mut last = None;
        for k in 0..frames {
            // People walk down across the line, as in the crossing test.
            let moved: Vec<_> = people
                .iter()
                .map(|&(id, x, y)| (id, x, y + 0.02 * k as f64))
                .collect();
            last = Some(h.push_and_pull(grey_frame(k, &moved)).unwrap());
        }
        last.unwrap()
    };
    let plain = grey_frame(0, &[]);
    let empty_scene = run(true, &[], 1);
    let changed = changed_pixels(&plain, &empty_scene, &caps());
    // The line at y = 120 from x = 32 to 288, drawn twice as thick as boxes (2 px): 4 px.
    for x in [40, 100, 200, 280] {
        assert!(changed.contains(&(x, 120)), "line pixel ({x}, 120) not drawn");
    }
    // The zone's right edge at x = 96, from y = 12 to 72.
    assert!(changed.contains(&(96, 50)), "zone edge not drawn");
    assert!(!changed.contains(&(160, 200)), "drew far from every shape");
    assert!(changed_pixels(&plain, &run(false, &[], 1), &caps()).is_empty());
    // After one person crossed, the line's tab (right of its middle) reads differently.
    // (The person walks at x = 0.85, right of the tab: boxes from x = 256.)
    let crossed = run(true, &[(1, 0.85, 0.3)], 20);
    let tab_changes = changed_pixels(&empty_scene, &crossed, &caps())
        .into_iter()
        .filter(|&(x, y)| (160..250).contains(&x) && (123..140).contains(&y))
        .count();
    assert!(tab_changes > 0, "the count's text did not change");
}
