//! `detectexport` writes valid JSON Lines whose boxes are the metas on the buffers, and a slow
//! output never holds up the stream.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use gst::prelude::*;

fn temp_path(name: &str) -> TempPath {
    TempPath::new(name)
}

#[test]
fn lines_match_the_metas_on_the_buffers() {
    init();
    let output = temp_path("photo.jsonl");
    let (pipeline, sink) = playing_with_appsink(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! imagefreeze num-buffers=5 ! video/x-raw,framerate=30/1 ! \
         asyncdetect mode=sync threshold=0.3 ! detectexport name=export location={} source=cam1 ! \
         appsink name=sink sync=false",
        data_path("data/person.jpg").display(),
        output.display()
    ));
    let mut buffers = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().unwrap();
        buffers.push((buffer.pts().unwrap().nseconds(), rois(buffer)));
    }
    let written: u64 = pipeline.by_name("export").unwrap().property("written");
    pipeline.set_state(gst::State::Null).unwrap();
    let text = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(written, 5);
    for ((pts, rois), line) in buffers.iter().zip(&lines) {
        assert_eq!(line["source"], "cam1");
        assert_eq!(line["timestamp"], *pts);
        assert_eq!(line["resolution"]["width"], 640);
        assert_eq!(line["resolution"]["height"], 424);
        let objects = line["objects"].as_array().unwrap();
        assert!(objects.len() >= 2, "person and animals: {line}");
        assert_eq!(objects.len(), rois.len());
        for (object, roi) in objects.iter().zip(rois) {
            assert_eq!(object["x"], roi.rect.0);
            assert_eq!(object["y"], roi.rect.1);
            assert_eq!(object["w"], roi.rect.2);
            assert_eq!(object["h"], roi.rect.3);
            assert_eq!(object["region_id"], roi.id);
            assert_eq!(object["roi_type"], roi.roi_type.as_str());
            let detection = &object["detection"];
            assert_eq!(detection["label"], roi.label.as_str());
            assert_eq!(detection["label_id"], roi.label_id);
            assert_eq!(detection["confidence"].as_f64().unwrap(), roi.confidence);
            assert_eq!(detection["bounding_box"]["x_min"].as_f64().unwrap(), roi.norm[0]);
            assert_eq!(detection["bounding_box"]["y_max"].as_f64().unwrap(), roi.norm[3]);
        }
    }
    drop(output);
}

#[test]
fn new_results_only_and_foreign_metas() {
    init();
    let output = temp_path("foreign.jsonl");
    let element = gst::ElementFactory::make("detectexport")
        .property("location", output.display().to_string())
        .property("new-results-only", true)
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str("video/x-raw,format=GRAY8,width=100,height=50,framerate=30/1");
    for (i, faces) in [0usize, 1, 1, 1, 0, 2].into_iter().enumerate() {
        let mut buffer = gst::Buffer::with_size(100 * 50).unwrap();
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(i as u64 * 10));
            for face in 0..faces {
                // A ROI from some other element: no detection parameters at all.
                let mut meta =
                    gst_video::VideoRegionOfInterestMeta::add(b, "face", (10 + 20 * face as u32, 5, 20, 25));
                meta.set_id(face as i32);
            }
        }
        h.push(buffer).unwrap();
        h.pull().unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let text = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let counts: Vec<usize> = lines
        .iter()
        .map(|l| l["objects"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, vec![0, 1, 0, 2], "one line per change");
    let face = &lines[1]["objects"][0];
    assert_eq!(face["roi_type"], "face");
    assert_eq!(face["detection"]["label"], "face");
    assert_eq!(face["detection"]["bounding_box"]["x_min"], 0.1);
    assert_eq!(face["detection"]["bounding_box"]["y_max"], 0.6);
    assert!(face["detection"].get("confidence").is_none());
    drop(h);
    drop(output);
}

/// The output is a pipe that nobody reads until every buffer has reached the sink: the stream runs
/// through regardless (were it held up by the output, it would never get there and the generous
/// deadline would fail the test), the lines that did not fit are dropped and counted, and everything
/// queued is written by EOS.
#[test]
fn a_slow_output_does_not_hold_up_the_stream() {
    init();
    let fifo = TempPath::fifo("slow.fifo");
    let buffers = 3000u64;
    let (all_through, all_through_seen) = std::sync::mpsc::channel::<()>();
    let reader_path = fifo.to_path_buf();
    let reader = std::thread::spawn(move || {
        let mut file = std::fs::File::open(reader_path).unwrap();
        // Only a hang runs into this deadline.
        let stream_ran_through = all_through_seen.recv_timeout(Duration::from_secs(120)).is_ok();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        (stream_ran_through, text)
    });
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={buffers} ! video/x-raw,width=64,height=48 ! \
         detectexport name=export location={} max-queue=16 ! fakesink name=sink sync=false",
        fifo.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = count.clone();
    let all_through = std::sync::Mutex::new(all_through);
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == buffers {
                let _ = all_through.lock().unwrap().send(());
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(180),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS");
    assert!(matches!(message.view(), gst::MessageView::Eos(_)), "{message:?}");
    let export = pipeline.by_name("export").unwrap();
    let (written, dropped): (u64, u64) = (export.property("written"), export.property("dropped"));
    pipeline.set_state(gst::State::Null).unwrap();
    let (stream_ran_through, text) = reader.join().unwrap();
    drop(fifo);

    assert!(stream_ran_through, "the stream waited for the output");
    assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), buffers);
    assert!(dropped > 0, "nothing was dropped");
    assert_eq!(written + dropped, buffers);
    assert_eq!(text.lines().count() as u64, written, "every counted line arrived");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("whole lines only");
    }
}

#[test]
fn unwritable_location_is_named() {
    init();
    let pipeline =
        gst::parse::launch("videotestsrc ! detectexport location=/nonexistent/dir/out.jsonl ! fakesink")
            .unwrap();
    assert!(pipeline.set_state(gst::State::Playing).is_err());
    let error = wait_for_error(&pipeline.bus().unwrap(), 5).unwrap();
    assert!(error.contains("/nonexistent/dir/out.jsonl"), "{error}");
    pipeline.set_state(gst::State::Null).unwrap();
}

/// A FIFO nobody reads: starting waits a bounded time for a reader, then fails with an error
/// naming the FIFO (it used to hang the state change forever).
#[test]
fn a_fifo_nobody_reads_is_an_error_not_a_hang() {
    init();
    let fifo = TempPath::fifo("unread.fifo");
    let description = format!(
        "videotestsrc num-buffers=3 ! detectexport location={} ! fakesink",
        fifo.display()
    );
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pipeline = gst::parse::launch(&description).unwrap();
        let started = pipeline.set_state(gst::State::Playing);
        let error = wait_for_error(&pipeline.bus().unwrap(), 30);
        pipeline.set_state(gst::State::Null).unwrap();
        let _ = done.send((started.is_err(), error));
    });
    let (refused, error) = result
        .recv_timeout(Duration::from_secs(120))
        .expect("starting with an unread FIFO hung");
    assert!(refused, "the state change fails");
    let error = error.expect("an error message");
    assert!(error.contains("unread.fifo") && error.contains("FIFO"), "{error}");
}

/// `append=true` keeps the lines of earlier runs (a 24/7 pipeline restarted); the default
/// replaces the file.
#[test]
fn append_keeps_earlier_lines() {
    init();
    let output = temp_path("append.jsonl");
    let run = |append: bool| {
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers=4 ! video/x-raw,width=64,height=48 ! \
             detectexport location={} append={append} ! fakesink",
            output.display()
        ))
        .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let message = pipeline
            .bus()
            .unwrap()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(60),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("EOS");
        assert!(matches!(message.view(), gst::MessageView::Eos(_)), "{message:?}");
        pipeline.set_state(gst::State::Null).unwrap();
        std::fs::read_to_string(&*output).unwrap().lines().count()
    };
    assert_eq!(run(false), 4);
    assert_eq!(run(true), 8, "appended");
    assert_eq!(run(true), 12, "appended again");
    assert_eq!(run(false), 4, "replaced without append");
}
