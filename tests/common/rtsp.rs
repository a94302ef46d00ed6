//! The RTSP server the camera tests stream the demo clip from, and the `rtsp_camera` example run
//! as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use super::{built, data_path, demo_clip};

pub fn clip() -> PathBuf {
    demo_clip()
}

/// Starts the RTSP server (Debian's gst-rtsp-server via Python) and waits until it listens.
pub fn start_server(port: u16) -> Child {
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

/// The example program, next to this test's own binary (built first if missing).
pub fn example(name: &str) -> PathBuf {
    built(&format!("examples/{name}"), &["--example", name])
}

/// Starts the `rtsp_camera` example with `args`; its output lines arrive on the receiver (and are
/// echoed) until the thread returned ends with it.
pub fn run_camera(args: &[&std::ffi::OsStr]) -> (Child, Receiver<String>, std::thread::JoinHandle<()>) {
    let mut camera = Command::new(example("rtsp_camera"))
        .args(args)
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
    (camera, lines, reader)
}

/// Waits for a line containing `needle`, returning it.
pub fn wait_for(lines: &Receiver<String>, needle: &str, seconds: u64) -> String {
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
