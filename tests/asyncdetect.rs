//! `asyncdetect` on real frames with the real built-in model.

mod common;

use common::*;
use gst::glib;
use gst::prelude::*;
use gst_video::prelude::*;

const FORMATS: [&str; 8] = ["I420", "NV12", "RGB", "BGR", "RGBA", "BGRA", "RGBx", "BGRx"];

fn sync_mode() -> (&'static str, glib::Value) {
    ("mode", gstasyncdetect::AsyncDetectMode::Sync.to_value())
}

fn person(rois: &[Roi]) -> &Roi {
    rois.iter()
        .find(|r| r.label == "person")
        .unwrap_or_else(|| panic!("no person among {rois:?}"))
}

#[test]
fn finds_the_person_in_every_format_at_odd_sizes() {
    init();
    for format in FORMATS {
        for (width, height) in [(641, 479), (333, 211)] {
            let (frame, caps) = photo_frame(format, width, height);
            let mut h = harness(&[sync_mode()], &caps);
            h.push(timestamped(&frame, 0)).expect("push");
            let out = h.pull().expect("a buffer comes out");
            let rois = rois(&out);
            let p = person(&rois);
            assert!(
                iou(p.norm, person_box()) > 0.8,
                "{format} {width}x{height}: person at {:?}, expected near {:?}",
                p.norm,
                person_box()
            );
            assert!(p.confidence > 0.9, "{format}: confidence {}", p.confidence);
            // Pixels are those of this buffer.
            let (x, y, w, h) = p.rect;
            assert!(
                (x as f64 - p.norm[0] * width as f64).abs() <= 1.0,
                "{format}: x {x}"
            );
            assert!(
                (y as f64 - p.norm[1] * height as f64).abs() <= 1.0,
                "{format}: y {y}"
            );
            assert!(x + w <= width && y + h <= height);
            assert_eq!(p.roi_type, "person");
        }
    }
}

#[test]
fn honours_padded_strides_from_video_meta() {
    init();
    // A BGRx and an I420 frame whose rows are 256 bytes longer than needed, described by a
    // GstVideoMeta as a camera or a hardware decoder would.
    for format in ["BGRx", "I420"] {
        let (frame, caps) = photo_frame(format, 320, 212);
        let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        let source = gst_video::VideoFrame::from_buffer_readable(frame, &info).unwrap();
        let planes = info.n_planes() as usize;
        let mut offsets = Vec::new();
        let mut strides = Vec::new();
        let mut data = Vec::new();
        for plane in 0..planes as u32 {
            let stride = source.plane_stride()[plane as usize] as usize;
            let padded = stride + 256;
            let rows = source.plane_data(plane).unwrap().len() / stride;
            offsets.push(data.len());
            strides.push(padded as i32);
            for row in source.plane_data(plane).unwrap().chunks(stride).take(rows) {
                data.extend_from_slice(row);
                data.extend(std::iter::repeat_n(0x55u8, 256));
            }
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        gst_video::VideoMeta::add_full(
            buffer.get_mut().unwrap(),
            gst_video::VideoFrameFlags::empty(),
            info.format(),
            info.width(),
            info.height(),
            &offsets,
            &strides,
        )
        .unwrap();
        let mut h = harness(&[sync_mode()], &caps);
        h.push(timestamped(&buffer, 0)).unwrap();
        let out = h.pull().unwrap();
        let rois = rois(&out);
        assert!(iou(person(&rois).norm, person_box()) > 0.8, "{format}: {rois:?}");
    }
}

/// The same 300x300 RGB frame through the element in sync mode and through ONNX Runtime directly
/// gives the same boxes.
#[test]
fn sync_mode_matches_onnx_runtime_run_directly() {
    init();
    let (frame, caps) = photo_frame("RGB", 300, 300);
    let mut h = harness(&[sync_mode(), ("threshold", 0.3f64.to_value())], &caps);
    h.push(timestamped(&frame, 0)).unwrap();
    let out = h.pull().unwrap();
    let mut from_element: Vec<(String, f64, [f64; 4])> = rois(&out)
        .into_iter()
        .map(|r| (r.label, r.confidence, r.norm))
        .collect();

    let environment = gstasyncdetect::engine::environment(None).expect("ONNX Runtime loads");
    let mut session = ort::session::Session::builder(&environment)
        .unwrap()
        .commit_from_memory(gstasyncdetect::engine::DEFAULT_MODEL)
        .unwrap();
    let pixels = frame.map_readable().unwrap();
    assert_eq!(pixels.len(), 300 * 300 * 3, "tightly packed RGB");
    let input = ort::value::TensorRef::from_array_view(([1usize, 300, 300, 3], pixels.as_slice())).unwrap();
    let outputs = session.run(ort::inputs![input]).unwrap();
    let boxes = outputs[0].try_extract_array::<f32>().unwrap();
    let classes = outputs[1].try_extract_array::<f32>().unwrap();
    let scores = outputs[2].try_extract_array::<f32>().unwrap();
    let count = outputs[3].try_extract_array::<f32>().unwrap()[[0]] as usize;
    let labels = gstasyncdetect::labels::Labels::parse(gstasyncdetect::engine::DEFAULT_LABELS).unwrap();
    let mut direct: Vec<(String, f64, [f64; 4])> = (0..count)
        .filter(|&i| scores[[0, i]] >= 0.3)
        .map(|i| {
            let b = |k: usize| boxes[[0, i, k]].clamp(0.0, 1.0) as f64;
            (
                labels.get(classes[[0, i]] as i32).unwrap().to_string(),
                scores[[0, i]] as f64,
                [b(1), b(0), b(3), b(2)],
            )
        })
        .collect();
    let order = |a: &(String, f64, [f64; 4]), b: &(String, f64, [f64; 4])| {
        b.1.total_cmp(&a.1).then(a.2[0].total_cmp(&b.2[0]))
    };
    from_element.sort_by(order);
    direct.sort_by(order);
    assert!(!direct.is_empty());
    assert_eq!(
        from_element.len(),
        direct.len(),
        "element {from_element:?} vs direct {direct:?}"
    );
    for (e, d) in from_element.iter().zip(&direct) {
        assert_eq!(e.0, d.0);
        assert!((e.1 - d.1).abs() < 1e-6, "{e:?} vs {d:?}");
        for k in 0..4 {
            assert!((e.2[k] - d.2[k]).abs() < 1e-5, "{e:?} vs {d:?}");
        }
    }
}

#[test]
fn metadata_follows_the_dl_streamer_layout() {
    init();
    let (frame, caps) = photo_frame("I420", 640, 424);
    let mut h = harness(&[sync_mode(), ("threshold", 0.3f64.to_value())], &caps);
    h.push(timestamped(&frame, 5)).unwrap();
    let out = h.pull().unwrap();
    let rois = rois(&out);
    assert!(rois.len() >= 2, "person and animals expected: {rois:?}");
    let mut ids: Vec<i32> = rois.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), rois.len(), "ids are distinct");
    let labels = gstasyncdetect::labels::Labels::parse(gstasyncdetect::engine::DEFAULT_LABELS).unwrap();
    for roi in &rois {
        assert_eq!(roi.roi_type, roi.label);
        assert_eq!(labels.get(roi.label_id), Some(roi.label.as_str()));
        assert!(roi.confidence >= 0.3 && roi.confidence <= 1.0);
        assert!(roi.norm[0] <= roi.norm[2] && roi.norm[1] <= roi.norm[3]);
        assert!(roi.norm.iter().all(|v| (0.0..=1.0).contains(v)));
        // Computed on this very frame in sync mode.
        assert_eq!(
            roi.frame_timestamp,
            Some(gst::ClockTime::from_mseconds(165).nseconds())
        );
        assert_eq!(roi.age, Some(0));
    }
}

#[test]
fn threshold_class_filter_and_limit() {
    init();
    let (frame, caps) = photo_frame("RGBx", 320, 212);
    let labels_of = |properties: &[(&str, glib::Value)]| {
        let mut all = vec![sync_mode()];
        all.extend(properties.iter().cloned());
        let mut h = harness(&all, &caps);
        h.push(timestamped(&frame, 0)).unwrap();
        let out = h.pull().unwrap();
        rois(&out).into_iter().map(|r| r.label).collect::<Vec<_>>()
    };
    let everything = labels_of(&[("threshold", 0.3f64.to_value())]);
    assert!(
        everything.len() >= 2 && everything.contains(&"person".to_string()),
        "{everything:?}"
    );
    let only_people = labels_of(&[("threshold", 0.3f64.to_value()), ("labels", "Person".to_value())]);
    assert_eq!(only_people, vec!["person"]);
    let no_cars = labels_of(&[("labels", "car,bus".to_value())]);
    assert!(no_cars.is_empty(), "{no_cars:?}");
    let one = labels_of(&[
        ("threshold", 0.3f64.to_value()),
        ("max-detections", 1u32.to_value()),
    ]);
    assert_eq!(one, vec!["person"], "the most confident one");
    assert!(labels_of(&[("threshold", 1.0f64.to_value())]).is_empty());
    // The person (99.6 %) needs 99.9 % of its own; the others keep the general threshold.
    let no_person = labels_of(&[
        ("threshold", 0.3f64.to_value()),
        ("class-thresholds", "Person=0.999".to_value()),
    ]);
    assert!(
        !no_person.is_empty() && !no_person.contains(&"person".to_string()),
        "{no_person:?}"
    );
    let only_person = labels_of(&[
        ("threshold", 1.0f64.to_value()),
        ("class-thresholds", "person=0.5".to_value()),
    ]);
    assert_eq!(only_person, vec!["person"]);
}

#[test]
fn malformed_class_thresholds_are_refused_with_a_warning() {
    init();
    let element = detector(&[("class-thresholds", "car=0.4".to_value())]);
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    element.set_property("class-thresholds", "person=lots");
    assert_eq!(
        element.property::<String>("class-thresholds"),
        "car=0.4",
        "the previous list stays"
    );
    let warning = bus.pop_filtered(&[gst::MessageType::Warning]).expect("a warning");
    let gst::MessageView::Warning(w) = warning.view() else {
        unreachable!()
    };
    assert!(w.error().to_string().contains("person=lots"), "{}", w.error());
}

/// The `timestamp` of the next `asyncdetect` result message on `bus` (the deadline only catches a
/// hang).
/// `labels=persn,car`: the misspelt class would silently match nothing. The element names it in
/// a warning, with the model's classes in the details, and still reports what it can (cars).
#[test]
fn a_misspelt_class_name_is_named_with_the_known_ones() {
    init();
    let (frame, caps) = photo_frame("I420", 640, 424);
    let (mut h, bus, _element) = harness_with_bus(&[sync_mode(), ("labels", "persn, CAR".to_value())], &caps);
    h.push(timestamped(&frame, 0)).unwrap();
    assert!(
        rois(&h.pull().unwrap()).is_empty(),
        "no class on the photo matches"
    );
    let (text, details) = std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
        .find_map(|m| match m.view() {
            gst::MessageView::Warning(w) if !w.error().to_string().contains("mode=sync") => {
                Some((w.error().to_string(), w.debug().unwrap_or_default().to_string()))
            }
            _ => None,
        })
        .expect("a warning naming the class");
    assert!(text.contains("persn") && !text.contains("car"), "{text}");
    assert!(
        details.contains("person") && details.contains("bicycle"),
        "{details}"
    );
    h.push(timestamped(&frame, 1)).unwrap();
    h.pull().unwrap();
    let more = warnings(&bus);
    assert!(more.is_empty(), "warned once for the setting: {more:?}");
}

/// DL Streamer's property names are the same properties here, so a `gvadetect` line works with
/// asyncdetect in its place.
#[test]
fn dl_streamer_property_names_are_the_same_properties() {
    init();
    let models = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let model = models
        .join("ssd_mobilenet_v2_coco_quant.onnx")
        .display()
        .to_string();
    let labels = models.join("coco_labels.txt").display().to_string();
    let (frame, caps) = photo_frame("I420", 640, 424);
    let (mut h, _bus, element) = harness_with_bus(
        &[
            sync_mode(),
            ("model", model.to_value()),
            ("labels-file", labels.to_value()),
            ("inference-interval", 3u32.to_value()),
            ("object-class", "horse".to_value()),
            ("nireq", 2u32.to_value()),
            ("device", "CPU".to_value()),
            ("batch-size", 1u32.to_value()),
        ],
        &caps,
    );
    assert_eq!(element.property::<Option<String>>("model-location"), Some(model));
    assert_eq!(
        element.property::<Option<String>>("labels-location"),
        Some(labels)
    );
    assert_eq!(element.property::<u32>("interval"), 3);
    assert_eq!(element.property::<String>("labels"), "horse");
    assert_eq!(element.property::<u32>("session-lanes"), 2);
    element.set_property("interval", 1u32);
    assert_eq!(
        element.property::<u32>("inference-interval"),
        1,
        "both names, one property"
    );
    h.push(timestamped(&frame, 0)).unwrap();
    let found: Vec<String> = rois(&h.pull().unwrap()).into_iter().map(|r| r.label).collect();
    assert_eq!(found, ["horse"], "object-class filters like labels");
}

fn next_result_timestamp(bus: &gst::Bus) -> u64 {
    loop {
        let message = bus
            .timed_pop_filtered(gst::ClockTime::from_seconds(120), &[gst::MessageType::Element])
            .expect("a result message");
        let s = message.structure().unwrap();
        if s.name() == "asyncdetect" {
            assert!(s.get::<u64>("inference-latency").unwrap() > 0);
            return s.get::<u64>("timestamp").unwrap();
        }
    }
}

/// Async mode: every buffer passes at once (nothing held back) and results arrive on later
/// buffers. Stepped by events: each frame is pushed only once the result of the one before has
/// been announced on the bus, so the model is idle and takes every frame, and the next buffer
/// must carry exactly that result.
#[test]
fn async_mode_passes_every_buffer_and_attaches_newer_results() {
    init();
    let (frame, caps) = photo_frame("NV12", 640, 424);
    let (mut h, bus, element) = harness_with_bus(&[], &caps);
    let total = 20u64;
    for i in 0..total {
        h.push(timestamped(&frame, i)).unwrap();
        let out = h.pull().unwrap();
        let pts = gst::ClockTime::from_mseconds(33 * i);
        assert_eq!(out.pts(), Some(pts), "order and timestamps kept");
        let rois = rois(&out);
        if i == 0 {
            assert!(rois.is_empty(), "no result exists before the first frame");
        } else {
            let p = person(&rois);
            assert!(iou(p.norm, person_box()) > 0.8, "{:?}", p.norm);
            let previous = gst::ClockTime::from_mseconds(33 * (i - 1)).nseconds();
            assert_eq!(
                p.frame_timestamp,
                Some(previous),
                "the result of the frame before"
            );
            assert_eq!(p.age, Some(33_000_000), "one frame old, in stream time");
        }
        assert_eq!(
            next_result_timestamp(&bus),
            pts.nseconds(),
            "this frame was inferred"
        );
    }
    assert_eq!(element.property::<u64>("frames-in"), total);
    assert_eq!(element.property::<u64>("frames-inferred"), total);
    assert_eq!(element.property::<u64>("frames-skipped"), 0);
    assert!(element.property::<u64>("inference-latency") > 0);
    assert!(element.property::<f64>("inference-fps") > 0.0);

    // Frames pushed as fast as they come out, never waiting for the model: every one passes in
    // order, and whatever result a buffer carries is from a frame that came before it.
    for i in total..total + 100 {
        h.push(timestamped(&frame, i)).unwrap();
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), Some(gst::ClockTime::from_mseconds(33 * i)));
        for roi in rois(&out) {
            let from = roi.frame_timestamp.expect("frame timestamp");
            assert!(from % 33_000_000 == 0 && from <= 33_000_000 * i, "{roi:?}");
        }
    }
    assert_eq!(element.property::<u64>("frames-in"), total + 100);
}

/// Pushes a copy of `frame`, waits for its result on the bus, and pushes the next: that one comes
/// out carrying the result, one frame (33 ms of stream time) old, however long the model took.
fn push_until_detected(h: &mut gst_check::Harness, bus: &gst::Bus, frame: &gst::Buffer) {
    h.push(timestamped(frame, 0)).unwrap();
    assert!(
        rois(&h.pull().unwrap()).is_empty(),
        "no result before the first frame"
    );
    assert_eq!(next_result_timestamp(bus), 0, "the first frame was inferred");
    h.push(timestamped(frame, 1)).unwrap();
    assert!(
        !rois(&h.pull().unwrap()).is_empty(),
        "the result of the first frame is attached"
    );
}

#[test]
fn max_age_drops_stale_results() {
    init();
    let (frame, caps) = photo_frame("I420", 320, 212);
    let (mut h, bus, _) = harness_with_bus(&[("max-age", 100_000_000u64.to_value())], &caps);
    push_until_detected(&mut h, &bus, &frame);
    // A buffer 1000 s later in stream time must not carry the result of a frame from then: the
    // result attached to a buffer is always one computed before that buffer arrived.
    let mut late = timestamped(&frame, 0);
    late.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_seconds(1000));
    h.push(late).unwrap();
    assert!(rois(&h.pull().unwrap()).is_empty());
}

/// After a flush no result from before it is attached.
#[test]
fn flush_forgets_old_results() {
    init();
    let (frame, caps) = photo_frame("RGBA", 320, 212);
    let (mut h, bus, _) = harness_with_bus(&[], &caps);
    push_until_detected(&mut h, &bus, &frame);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    h.push_event(gst::event::Segment::new(
        &gst::FormattedSegment::<gst::ClockTime>::new(),
    ));
    h.push(timestamped(&frame, 1)).unwrap();
    let out = h.pull().unwrap();
    assert!(
        rois(&out).is_empty(),
        "stale result after flush: {:?}",
        rois(&out)
    );
}

/// A caps change mid-stream: boxes come out in the new frame's pixels.
#[test]
fn caps_change_uses_the_new_size_and_format() {
    init();
    let (small, small_caps) = photo_frame("RGB", 300, 300);
    let (large, large_caps) = photo_frame("I420", 1280, 848);
    let mut h = harness(&[sync_mode()], &small_caps);
    h.push(timestamped(&small, 0)).unwrap();
    let first = person(&rois(&h.pull().unwrap())).clone();
    assert_eq!(first.rect.0, (first.norm[0] * 300.0).round() as u32);
    h.set_src_caps(large_caps);
    h.push(timestamped(&large, 1)).unwrap();
    let second = person(&rois(&h.pull().unwrap())).clone();
    assert!(iou(second.norm, person_box()) > 0.8);
    assert_eq!(second.rect.0, (second.norm[0] * 1280.0).round() as u32);
    assert_eq!(
        second.rect.3,
        ((second.norm[3] * 848.0).round() - (second.norm[1] * 848.0).round()) as u32
    );
}

/// Sync mode in a pipeline: every frame gets its own inference before EOS goes on.
#[test]
fn sync_mode_infers_every_frame_before_eos() {
    init();
    let (pipeline, sink) = playing_with_appsink(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! imagefreeze num-buffers=12 ! \
         video/x-raw,framerate=30/1 ! asyncdetect name=detect mode=sync ! appsink name=sink sync=false",
        data_path("data/person.jpg").display()
    ));
    let mut frames = 0;
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().unwrap();
        let rois = rois(buffer);
        assert_eq!(person(&rois).age, Some(0), "each frame carries its own result");
        frames += 1;
    }
    assert!(sink.is_eos());
    let detect = pipeline.by_name("detect").unwrap();
    assert_eq!(frames, 12);
    assert_eq!(detect.property::<u64>("frames-inferred"), 12);
    assert_eq!(detect.property::<u64>("frames-skipped"), 0);
    pipeline.set_state(gst::State::Null).unwrap();
}

/// Plays `pipeline` to its end and returns the messages its bus carried until EOS; an error
/// fails the test (the deadline only catches a hang).
fn messages_until_eos(pipeline: &gst::Element) -> Vec<gst::Message> {
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut messages = Vec::new();
    loop {
        let message = bus
            .timed_pop(gst::ClockTime::from_seconds(120))
            .expect("the stream ends");
        match message.view() {
            gst::MessageView::Eos(_) => return messages,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => messages.push(message),
        }
    }
}

/// A stream that runs faster than the model (a file into an unsynchronised sink): in async mode
/// the end of the stream waits for the frame handed over last, so its result is posted before
/// EOS, and the element says how many frames it inferred.
#[test]
fn the_end_of_a_fast_stream_posts_the_last_result_and_a_summary() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! imagefreeze num-buffers=30 ! \
         video/x-raw,framerate=30/1 ! asyncdetect name=detect ! fakesink sync=false",
        data_path("data/person.jpg").display()
    ))
    .unwrap();
    let messages = messages_until_eos(&pipeline);
    let mut last_result = None;
    let mut summary = None;
    for message in &messages {
        match message.view() {
            gst::MessageView::Element(e) if e.structure().is_some_and(|s| s.name() == "asyncdetect") => {
                last_result = e.structure().map(|s| s.to_string());
            }
            gst::MessageView::Info(info) => summary = info.debug().map(|d| d.to_string()),
            _ => (),
        }
    }
    let inferred = pipeline
        .downcast_ref::<gst::Bin>()
        .and_then(|bin| bin.by_name("detect"))
        .unwrap()
        .property::<u64>("frames-inferred");
    pipeline.set_state(gst::State::Null).unwrap();
    let last_result = last_result.expect("at least one result was posted before EOS");
    assert!(last_result.contains("person"), "{last_result}");
    let summary = summary.expect("a summary at EOS");
    assert!(
        summary.contains(&format!("{inferred} of 30 frames inferred")),
        "{summary}"
    );
}

/// Sync mode on a live source whose frames come faster than the model: the video slows to the
/// model's rate, and the element says so once, with the figures. A file (not live) does not warn.
#[test]
fn sync_mode_on_a_fast_live_source_warns_once() {
    init();
    let warnings_of = |live: bool| {
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc is-live={live} num-buffers=40 ! \
             video/x-raw,width=320,height=240,framerate=1000/1 ! asyncdetect mode=sync ! fakesink"
        ))
        .unwrap();
        let warnings = messages_until_eos(&pipeline)
            .iter()
            .filter_map(|message| match message.view() {
                gst::MessageView::Warning(w) => Some(w.error().to_string()),
                _ => None,
            })
            .collect::<Vec<_>>();
        pipeline.set_state(gst::State::Null).unwrap();
        warnings
    };
    let live = warnings_of(true);
    assert_eq!(live.len(), 1, "{live:?}");
    assert!(
        live[0].contains("mode=sync on a live source") && live[0].contains("1 ms between frames"),
        "{}",
        live[0]
    );
    assert_eq!(warnings_of(false), Vec::<String>::new());
}

/// LATENCY: async adds nothing; sync adds the measured inference time.
#[test]
fn latency_query_is_honest_for_each_mode() {
    init();
    for mode in [
        gstasyncdetect::AsyncDetectMode::Async,
        gstasyncdetect::AsyncDetectMode::Sync,
    ] {
        let pipeline = gst::parse::launch(
            "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! \
             asyncdetect name=detect ! fakesink name=sink",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let detect = pipeline.by_name("detect").unwrap();
        detect.set_property("mode", mode);
        pipeline.set_state(gst::State::Playing).unwrap();
        // Let the model load and run a few times (the deadline only catches a hang).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while detect.property::<u64>("frames-inferred") < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{mode:?}: the model never ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut upstream = gst::query::Latency::new();
        assert!(detect.static_pad("sink").unwrap().peer_query(&mut upstream));
        let mut ours = gst::query::Latency::new();
        assert!(detect.static_pad("src").unwrap().query(&mut ours));
        let (live, min, _) = ours.result();
        assert!(live);
        let added = min.saturating_sub(upstream.result().1);
        match mode {
            gstasyncdetect::AsyncDetectMode::Async => assert_eq!(added, gst::ClockTime::ZERO),
            _ => assert!(added > gst::ClockTime::ZERO, "sync mode adds its inference time"),
        }
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

/// Flushing seeks back and forth on a real clip while inference runs: after each seek, every result
/// attached comes from a frame that passed after that seek.
#[test]
fn seeking_never_attaches_results_from_before_the_seek() {
    init();
    let clip = demo_clip();
    let (pipeline, sink) = playing_with_appsink(&format!(
        // Decoding as fast as possible takes all the CPU; at the default niceness the model would
        // get only what the video leaves. This test is about flushing, so let it compete.
        "filesrc location={} ! decodebin ! videoconvert ! asyncdetect threshold=0.3 inference-nice=0 ! \
         appsink name=sink sync=false max-buffers=2",
        clip.display()
    ));
    let mut attached_total = 0;
    for (round, seconds) in [6u64, 1, 8, 0, 4, 2, 7, 3].into_iter().enumerate() {
        // Run a little so inference is busy when the seek comes.
        for _ in 0..10 {
            if sink.pull_sample().is_err() {
                break;
            }
        }
        let target = gst::ClockTime::from_seconds(seconds);
        pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
            .unwrap_or_else(|e| panic!("round {round}: seek to {target}: {e}"));
        let mut first_pts: Option<gst::ClockTime> = None;
        // Until a few results came after the seek (how many frames that takes depends on the
        // machine's load), or the clip ends.
        let mut attached_this_round = 0;
        for _ in 0..200 {
            if attached_this_round >= 3 {
                break;
            }
            let Ok(sample) = sink.pull_sample() else { break };
            let buffer = sample.buffer().unwrap();
            let pts = buffer.pts().unwrap();
            let first = *first_pts.get_or_insert(pts);
            for roi in rois(buffer) {
                attached_total += 1;
                attached_this_round += 1;
                let from = gst::ClockTime::from_nseconds(roi.frame_timestamp.unwrap());
                assert!(
                    from >= first,
                    "round {round}: after seeking to {target} (first frame {first}) a result from {from} was attached"
                );
            }
        }
        assert!(first_pts.is_some(), "round {round}: frames flow after the seek");
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(attached_total > 0, "detections were attached between seeks");
}

#[test]
fn post_messages_can_be_turned_off() {
    init();
    let (frame, caps) = photo_frame("I420", 320, 212);
    let (mut h, bus, element) = harness_with_bus(&[sync_mode(), ("post-messages", false.to_value())], &caps);
    for i in 0..3 {
        h.push(timestamped(&frame, i)).unwrap();
        assert!(
            !rois(&h.pull().unwrap()).is_empty(),
            "detections are still attached"
        );
    }
    element.set_property("post-messages", true);
    h.push(timestamped(&frame, 3)).unwrap();
    h.pull().unwrap();
    // Messages come in order: the first one must be the fourth frame's, and the only one.
    let message = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Element])
        .expect("a message once turned on");
    let timestamp = message.structure().unwrap().get::<u64>("timestamp").unwrap();
    assert_eq!(timestamp, gst::ClockTime::from_mseconds(99).nseconds());
    assert!(bus.pop_filtered(&[gst::MessageType::Element]).is_none());
}
