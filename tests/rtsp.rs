//! The `rtsp_camera` example against a real RTSP server on 127.0.0.1 serving a clip with people:
//! detections arrive; the server stops and the example keeps retrying; the server comes back and
//! detections arrive again, in the same process; Ctrl-C finishes the recording cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn clip() -> PathBuf {
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/media/bikes.mp4");
    assert!(
        clip.exists(),
        "{} is missing: run scripts/setup.sh",
        clip.display()
    );
    clip
}

/// Starts the RTSP server (Debian's gst-rtsp-server via Python) and waits until it listens.
fn start_server(port: u16) -> Child {
    let mut server = Command::new("/usr/bin/python3")
        .arg(data_path("rtsp_server.py"))
        .arg(port.to_string())
        .arg(clip())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with GObject bindings (scripts/setup.sh installs them)");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the RTSP server did not start");
    server
}

/// The example program, built by `cargo build --examples` (scripts/test.sh) or plain `cargo test`
/// next to this test's own binary.
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --examples` first",
        path.display()
    );
    path
}

/// Waits for a line containing `needle`, returning it.
fn wait_for(lines: &Receiver<String>, needle: &str, seconds: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    panic!("no line with `{needle}` within {seconds} s");
}

#[test]
fn cameras_are_watched_across_server_restarts() {
    init();
    let port = free_port();
    let recordings = std::env::temp_dir().join(format!("rtsp-camera-{}", std::process::id()));
    let mut server = start_server(port);
    let mut camera = Command::new(example("rtsp_camera"))
        .arg("--record")
        .arg(&recordings)
        .arg(format!("gate=rtsp://127.0.0.1:{port}/camera"))
        .arg("threshold=0.5")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the rtsp_camera example runs");
    let (sender, lines) = channel();
    let stdout = camera.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("rtsp_camera: {line}");
            let _ = sender.send(line);
        }
    });

    wait_for(&lines, "[gate]", 10);
    let first = wait_for(&lines, "person", 60);
    assert!(first.starts_with("[gate]"), "{first}");

    // The camera goes away: the example notices and keeps retrying.
    server.kill().unwrap();
    server.wait().unwrap();
    wait_for(&lines, "camera lost", 30);
    wait_for(&lines, "retrying", 5);

    // It comes back on the same address: detections resume in the same process.
    let mut server = start_server(port);
    wait_for(&lines, "connecting", 60);
    wait_for(&lines, "person", 60);
    assert!(camera.try_wait().unwrap().is_none(), "the example kept running");

    // Ctrl-C: files are finished and the process exits cleanly.
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(camera.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
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
    let _ = std::fs::remove_dir_all(&recordings);
}
