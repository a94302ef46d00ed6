//! Remote inference against a real Triton Inference Server on loopback (nvidia-pytriton serving
//! the shipped SSD model with ONNX Runtime, `tests/triton_server.py`): results match the local
//! model's frame by frame; a server down at start, lost mid-stream or restarted, a slow server, a
//! missing model and one with unusable outputs leave the video flowing with one warning each and
//! results resume by themselves; TLS with a private authority; bad addresses fail the start.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::triton::{Ports, Triton};
use common::*;
use gst::prelude::*;

const LABELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/coco_labels.txt");

/// One Triton at a time: several starting at once on a small machine take minutes, and the
/// timings the tests wait with are not meant for that.
fn one_server_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERVER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Detections per frame of the first `frames` frames of the demo clip through `asyncdetect` in
/// sync mode with `properties`.
fn detections_per_frame(properties: &str, frames: u32) -> Vec<Vec<Roi>> {
    let (pipeline, sink) = playing_with_appsink(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! identity eos-after={frames} ! \
         asyncdetect name=d mode=sync labels-location={LABELS} {properties} ! \
         appsink name=sink sync=false",
        demo_clip().display()
    ));
    let mut per_frame = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        per_frame.push(rois(sample.buffer().unwrap()));
    }
    let bus = pipeline.bus().unwrap();
    let error = wait_for_error(&bus, 0);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(error.is_none(), "{properties}: {error:?}");
    per_frame
}

#[test]
fn served_results_match_the_local_models_frame_by_frame() {
    init();
    let _server = one_server_at_a_time();
    let triton = Triton::start(Ports::reserve(), None);
    let frames = 60;
    let local = detections_per_frame("", frames);
    let served = detections_per_frame(
        &format!("inference-server={} server-model=ssd", triton.url()),
        frames,
    );
    assert!(local.len() >= frames as usize);
    assert_eq!(served.len(), local.len());
    // Every clear detection (not at the 0.5 threshold's edge, where the last bit of a float sum
    // decides) of either is the other's too: same class, same box, same confidence.
    let mut persons = 0;
    for (index, (here, there)) in local.iter().zip(&served).enumerate() {
        for (one, other) in [(here, there), (there, here)] {
            for a in one.iter().filter(|roi| roi.confidence >= 0.52) {
                let matched = other.iter().any(|b| {
                    a.label == b.label
                        && (a.confidence - b.confidence).abs() < 0.01
                        && iou(a.norm, b.norm) > 0.98
                });
                assert!(matched, "frame {index}: {a:?} is not in {other:?}");
                persons += usize::from(a.label == "person");
            }
        }
    }
    assert!(persons >= 5, "the clip's riders are found: {persons}");
}

/// A live test-card stream through `asyncdetect` (async mode) into an appsink, with the bus.
struct Live {
    pipeline: gst::Pipeline,
    element: gst::Element,
    received: mpsc::Receiver<()>,
    bus: gst::Bus,
}

impl Live {
    fn start(properties: &str) -> Live {
        let (pipeline, sink) = with_appsink(&format!(
            "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=240,framerate=30/1 ! \
             asyncdetect name=d labels-location={LABELS} {properties} ! appsink name=sink sync=false"
        ));
        let (sender, received) = mpsc::channel();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let _ = sink.pull_sample();
                    let _ = sender.send(());
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let element = pipeline.by_name("d").unwrap();
        let bus = pipeline.bus().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        Live {
            pipeline,
            element,
            received,
            bus,
        }
    }

    /// Buffers that reached the sink during the next `seconds`.
    fn buffers_during(&self, seconds: f64) -> usize {
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let mut count = 0;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if self.received.recv_timeout(left).is_ok() {
                count += 1;
            }
        }
        count
    }

    fn inferred(&self) -> u64 {
        self.element.property::<u64>("frames-inferred")
    }

    /// Waits up to `seconds` (a deadline that only catches a hang) for more than `count` frames
    /// inferred.
    fn inferred_beyond(&self, count: u64, seconds: u64) -> bool {
        let until = Instant::now() + Duration::from_secs(seconds);
        while self.inferred() <= count {
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn status(&self) -> String {
        self.element.property::<String>("server-status")
    }

    /// Waits up to `seconds` for `asyncdetect-server` with `status`, passing warnings to `warned`.
    fn wait_for_status(&self, status: &str, seconds: u64, warned: &mut Vec<String>) -> bool {
        let until = Instant::now() + Duration::from_secs(seconds);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            let Some(message) = self
                .bus
                .timed_pop(gst::ClockTime::from_mseconds(left.as_millis() as u64))
            else {
                break;
            };
            match message.view() {
                gst::MessageView::Warning(w) => warned.push(w.error().to_string()),
                gst::MessageView::Error(e) => panic!("error: {}", e.error()),
                gst::MessageView::Element(e) => {
                    let Some(s) = e.structure() else { continue };
                    if s.name() == "asyncdetect-server"
                        && s.get::<String>("status").ok().as_deref() == Some(status)
                    {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The server is down when the stream starts, comes up, is killed mid-stream and restarted: the
/// video never stops, each outage is one warning naming the server, and results resume.
#[test]
fn a_server_down_at_start_or_lost_mid_stream_costs_no_frames_and_results_resume() {
    init();
    let _server = one_server_at_a_time();
    let ports = Ports::reserve();
    let url = ports.url();
    let live = Live::start(&format!(
        "inference-server={url} server-model=ssd server-timeout=2000"
    ));
    let mut warned = Vec::new();
    assert!(live.wait_for_status("retrying", 20, &mut warned), "{warned:?}");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains(&url) && warned[0].contains("unreachable"),
        "{warned:?}"
    );
    assert!(live.status().starts_with("retrying: "), "{}", live.status());
    // No server, yet the video flows.
    assert!(live.buffers_during(2.0) > 10);
    assert_eq!(live.inferred(), 0);

    let mut triton = Triton::start(ports, None);
    assert!(live.wait_for_status("ready", 60, &mut warned), "{warned:?}");
    assert_eq!(live.status(), "ready");
    let before = live.inferred();
    assert!(
        live.inferred_beyond(before, 30),
        "results come while the server is up"
    );

    triton.kill();
    assert!(live.wait_for_status("retrying", 20, &mut warned), "{warned:?}");
    assert!(
        live.buffers_during(2.0) > 10,
        "the video flows while the server is gone"
    );
    let stalled = live.inferred();
    live.buffers_during(1.0);
    assert_eq!(live.inferred(), stalled);

    triton.restart();
    assert!(
        live.wait_for_status("ready", 60, &mut warned),
        "{warned:?}, status {}",
        live.status()
    );
    let before = live.inferred();
    assert!(live.inferred_beyond(before, 30), "results resume by themselves");
    // One warning per outage, not one per frame.
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned.iter().all(|w| w.contains(&url)), "{warned:?}");
}

/// A slow answer, a model the server lacks, and a model whose outputs no decoder reads: a warning
/// naming the server and the problem, the video flowing, `server-status` saying why.
#[test]
fn a_slow_server_a_missing_model_and_unusable_outputs_are_reported_once_and_the_video_flows() {
    init();
    let _server = one_server_at_a_time();
    let triton = Triton::start(Ports::reserve(), None);
    for (model, extra, expected) in [
        ("ssd_slow", "server-timeout=300", "did not answer in time"),
        ("no_such_model", "", "does not serve the model"),
        ("unusable", "", "cannot decode the model's outputs"),
    ] {
        let live = Live::start(&format!(
            "inference-server={} server-model={model} {extra}",
            triton.url()
        ));
        let mut warned = Vec::new();
        assert!(
            live.wait_for_status("retrying", 20, &mut warned),
            "{model}: {warned:?}"
        );
        assert!(live.buffers_during(2.0) > 10, "{model}: the video flows");
        live.wait_for_status("no such status", 1, &mut warned);
        assert_eq!(warned.len(), 1, "{model}: {warned:?}");
        assert!(
            warned[0].contains(expected) && warned[0].contains(&triton.url()),
            "{model}: {warned:?}"
        );
        assert!(live.status().contains(expected), "{model}: {}", live.status());
        assert_eq!(live.inferred(), 0);
    }
}

/// `grpcs://` to a server whose certificate a private authority signed, with a token: results.
#[test]
fn tls_with_a_private_authority() {
    init();
    let _server = one_server_at_a_time();
    let dir = TempPath::new("triton-tls");
    let authority = test_authority(&dir);
    let triton = Triton::start(
        Ports::reserve(),
        Some((authority.certificate.clone(), authority.key.clone())),
    );
    let served = detections_per_frame(
        &format!(
            "inference-server={} server-model=ssd server-ca-file={} server-token=secret-token \
             server-headers=x-api-key=abc",
            triton.url(),
            authority.ca.display()
        ),
        30,
    );
    assert!(
        served.iter().flatten().any(|roi| roi.label == "person"),
        "{served:?}"
    );

    // Without the authority the server's certificate is not trusted: a warning, no results.
    let live = Live::start(&format!("inference-server={} server-model=ssd", triton.url()));
    let mut warned = Vec::new();
    assert!(live.wait_for_status("retrying", 20, &mut warned), "{warned:?}");
    assert!(warned[0].contains(&triton.url()), "{warned:?}");
}

/// `examples/scale_out.toml` as a camera box runs it: two RTSP cameras through `rtsp_camera`,
/// the model on the server; detections of the clip's riders arrive from both.
#[test]
fn the_scale_out_example_runs_its_cameras_against_the_server() {
    init();
    let _server = one_server_at_a_time();
    let triton = Triton::start(Ports::reserve(), None);
    let rtsp_port = free_port();
    let mut rtsp = common::rtsp::start_server(rtsp_port);
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/scale_out.toml")).unwrap();
    let config = TempPath::new("scale_out.toml");
    std::fs::write(
        &config,
        example
            .replace("grpc://127.0.0.1:8001", &triton.url())
            .replace("rtsp://127.0.0.1:8554", &format!("rtsp://127.0.0.1:{rtsp_port}"))
            .replace("\"models/coco_labels.txt\"", &format!("\"{LABELS}\"")),
    )
    .unwrap();
    let (mut camera, lines, reader) = common::rtsp::run_camera(&["--config".as_ref(), config.as_os_str()]);
    // Detection lines read "[name]   1.23s  label 87% (x0,y0)-(x1,y1), ...".
    let mut detections: std::collections::HashMap<String, String> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while detections.len() < 2 && Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if line.contains('%')
            && let Some(name) = line.strip_prefix('[').and_then(|rest| rest.split(']').next())
        {
            detections.entry(name.to_string()).or_insert(line.clone());
        }
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(camera.id() as libc::pid_t, libc::SIGINT) };
    let status = camera.wait().unwrap();
    reader.join().unwrap();
    rtsp.kill().unwrap();
    rtsp.wait().unwrap();
    for name in ["gate", "yard"] {
        let line = detections.get(name).map(String::as_str).unwrap_or("(none)");
        assert!(
            line.contains("person") || line.contains("bicycle"),
            "{name}: {line}"
        );
    }
    assert!(status.success(), "{status}");
}

#[test]
fn bad_addresses_and_settings_fail_the_start_naming_the_problem() {
    init();
    for (properties, expected) in [
        (
            "inference-server=http://127.0.0.1:8001 server-model=ssd",
            "write grpc://host:port",
        ),
        (
            "inference-server=grpc://127.0.0.1:8001",
            "server-model names no model",
        ),
        (
            "inference-server=grpc://a:b@127.0.0.1:8001 server-model=ssd",
            "credentials",
        ),
        (
            "inference-server=grpc://127.0.0.1:8001 server-model=ssd model-location=/x.onnx",
            "Both model-location",
        ),
        (
            "inference-server=grpcs://127.0.0.1:8001 server-model=ssd server-ca-file=/no/such.pem",
            "/no/such.pem",
        ),
        (
            "inference-server=grpc://127.0.0.1:8001 server-model=ssd server-headers=novalue",
            "not name=value",
        ),
    ] {
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers=5 ! asyncdetect {properties} ! fakesink"
        ))
        .unwrap();
        let started = pipeline.set_state(gst::State::Playing);
        let error = wait_for_error(&pipeline.bus().unwrap(), 5);
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(started.is_err(), "{properties}");
        let error = error.unwrap_or_default();
        assert!(error.contains(expected), "{properties}: {error}");
    }
}
