//! The `rtsp_camera` example against a real RTSP server on 127.0.0.1 serving a clip with people:
//! detections arrive; the server stops and the example keeps retrying; the server comes back and
//! detections arrive again, in the same process; Ctrl-C finishes the recording cleanly.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::rtsp::*;
use common::*;
use gst::prelude::*;

#[test]
fn cameras_are_watched_across_server_restarts() {
    init();
    let port = free_port();
    let recordings = TempPath::new("recordings");
    let mut server = start_server(port);
    let (mut camera, lines, reader) = run_camera(&[
        "--record".as_ref(),
        recordings.as_os_str(),
        format!("gate=rtsp://127.0.0.1:{port}/camera").as_ref(),
        "threshold=0.5".as_ref(),
    ]);

    wait_for(&lines, "[gate]", 120);
    let first = wait_for(&lines, "person", 120);
    assert!(first.starts_with("[gate]"), "{first}");

    // The camera goes away: the example notices and keeps retrying.
    server.kill().unwrap();
    server.wait().unwrap();
    wait_for(&lines, "camera lost", 120);
    wait_for(&lines, "retrying", 120);

    // It comes back on the same address: detections resume in the same process.
    let mut server = start_server(port);
    wait_for(&lines, "connecting", 120);
    wait_for(&lines, "person", 120);
    assert!(camera.try_wait().unwrap().is_none(), "the example kept running");

    // Ctrl-C: files are finished and the process exits cleanly.
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(camera.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = camera.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "rtsp_camera did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    reader.join().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();

    // The last recording was finished by EOS: it demuxes and decodes to the end without error.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&recordings)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    files.sort();
    let last = files.last().expect("a recording");
    let check = gst::parse::launch(&format!(
        "filesrc location={} ! matroskademux ! h264parse ! avdec_h264 ! fakesink name=sink",
        last.display()
    ))
    .unwrap();
    let bus = check.bus().unwrap();
    check.set_state(gst::State::Playing).unwrap();
    let end = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    assert!(
        matches!(end.view(), gst::MessageView::Eos(_)),
        "{} is not a finished recording: {end:?}",
        last.display()
    );
    check.set_state(gst::State::Null).unwrap();
}

/// Cameras from a TOML config file: each gets its own region and rates, all share one session.
/// Boxes of the camera restricted to the left half stay in the left half of the frame.
#[test]
fn cameras_from_a_config_file() {
    init();
    let port = free_port();
    let mut server = start_server(port);
    let config = TempPath::new("cameras.toml");
    std::fs::write(
        &config,
        format!(
            "[detector]\nthreshold = 0.4\npost-messages = true\n\n\
             [[camera]]\nname = \"whole\"\nurl = \"rtsp://127.0.0.1:{port}/camera\"\nmax-fps = 10.0\n\
             zones = \"left:0,0 0.5,0 0.5,1 0,1\"\nlines = \"middle:0.5,0 0.5,1\"\n\n\
             [[camera]]\nname = \"left\"\nurl = \"rtsp://127.0.0.1:{port}/camera\"\n\
             roi = \"0,0,0.5,1\"\ninterval = 2\nmotion-gating = true\ndetector = {{ threshold = 0.3 }}\n"
        ),
    )
    .unwrap();
    let (mut camera, lines, reader) = run_camera(&["--config".as_ref(), config.as_os_str()]);
    // Detection lines read "[name]   1.23s  label 87% (x0,y0)-(x1,y1), ...".
    let boxes = |line: &str| -> Vec<(i64, i64)> {
        line.split(" (")
            .skip(1)
            .filter_map(|part| {
                let (start, rest) = part.split_once(")-(")?;
                let end = rest.split(')').next()?;
                let x0 = start.split(',').next()?.parse().ok()?;
                let x1 = end.split(',').next()?.parse().ok()?;
                Some((x0, x1))
            })
            .collect()
    };
    let mut left_lines = 0;
    let mut whole_seen = false;
    // The camera with zones and lines reports its events, the other none.
    let mut whole_events = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while (left_lines < 3 || !whole_seen || whole_events == 0) && Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if line.starts_with("[left]") && line.contains('%') {
            let found = boxes(&line);
            assert!(!found.is_empty(), "{line}");
            // bikes.mp4 is 640 wide: the left half ends at x 320.
            assert!(found.iter().all(|&(_, x1)| x1 <= 322), "outside the roi: {line}");
            left_lines += 1;
        }
        whole_seen |= line.starts_with("[whole]") && line.contains('%');
        let event = line.contains(" entered left") || line.contains(" crossed middle (");
        assert!(!(event && line.starts_with("[left]")), "{line}");
        whole_events += usize::from(event && line.starts_with("[whole]"));
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(camera.id() as libc::pid_t, libc::SIGINT) };
    let status = camera.wait().unwrap();
    reader.join().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        whole_seen && left_lines >= 3 && whole_events > 0,
        "whole {whole_seen}, left {left_lines}, events {whole_events}"
    );
    assert!(status.success(), "{status}");

    // A config the example cannot use is refused at start with a message naming the problem: an
    // unknown key, a detector property that does not exist, a value it cannot parse.
    let bad = TempPath::new("bad-cameras.toml");
    let camera = "[[camera]]\nname = \"x\"\nurl = \"rtsp://127.0.0.1:1/x\"\n";
    for (config, named) in [
        (format!("{camera}zoom = 3\n"), "zoom"),
        (format!("[detector]\nsharpness = 3\n{camera}"), "sharpness"),
        (format!("[detector]\nthreshold = \"high\"\n{camera}"), "threshold"),
        (format!("[events]\nflavour = 1\n{camera}"), "flavour"),
        (format!("{camera}zones = \"door:0,0 1,1\"\n"), "at least 3 points"),
    ] {
        std::fs::write(&bad, config).unwrap();
        let output = Command::new(example("rtsp_camera"))
            .arg("--config")
            .arg(bad.as_os_str())
            .output()
            .unwrap();
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{message}");
        assert!(message.contains(named), "{message}");
    }
    // Not a regular file: refused, not read until memory runs out.
    let output = Command::new(example("rtsp_camera"))
        .args(["--config", "/dev/zero"])
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("/dev/zero") && message.contains("not a regular file"),
        "{message}"
    );
}

/// A camera that cannot be reached, recorded: its URL's password never reaches the output (not
/// while connecting, not when the camera is lost: shown as `user:***@`), and the failed attempts
/// leave no recording files behind (one empty file per retry used to pile up).
#[test]
fn a_dead_camera_prints_no_credentials_and_records_nothing() {
    init();
    let port = free_port();
    let recordings = TempPath::new("dead-camera-recordings");
    let (mut camera, lines, reader) = run_camera(&[
        "--record".as_ref(),
        recordings.as_os_str(),
        format!("gate=rtsp://admin:s3cret-pw@127.0.0.1:{port}/camera").as_ref(),
    ]);
    let mut seen = vec![wait_for(&lines, "connecting", 120)];
    seen.push(wait_for(&lines, "retrying", 120));
    seen.push(wait_for(&lines, "connecting", 120));
    seen.push(wait_for(&lines, "retrying", 120));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(camera.id() as libc::pid_t, libc::SIGINT) };
    let status = camera.wait().unwrap();
    reader.join().unwrap();
    seen.extend(lines.try_iter());
    assert!(status.success(), "{status}");
    assert!(seen[0].contains("admin:***@127.0.0.1"), "{seen:?}");
    assert!(!seen.iter().any(|l| l.contains("s3cret")), "{seen:?}");
    let left: Vec<_> = std::fs::read_dir(&*recordings).unwrap().collect();
    assert!(left.is_empty(), "files left by failed attempts: {left:?}");

    // A mistyped scheme is refused, and the refusal does not echo the password either.
    let output = Command::new(example("rtsp_camera"))
        .arg("rtsps//admin:s3cret-pw@camera.invalid/x")
        .arg("https://admin:s3cret-pw@camera.invalid/x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unexpected argument") && !stderr.contains("s3cret"),
        "{stderr}"
    );

    // A camera name cannot smuggle text into the recording pipeline or a path out of the
    // recording directory: it is refused at start.
    for name in ["x\" location=\"/tmp/elsewhere", "../outside", ".hidden"] {
        let output = Command::new(example("rtsp_camera"))
            .args(["--record".as_ref(), recordings.as_os_str()])
            .arg(format!("{name}=rtsp://127.0.0.1:{port}/camera"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains("camera name"), "{stderr}");
    }
}
