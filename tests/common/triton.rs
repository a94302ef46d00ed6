//! A real Triton Inference Server on loopback (`tests/triton_server.py`, nvidia-pytriton in the
//! venv `scripts/setup.sh` makes), for the remote-inference tests and benchmark. Shared by both
//! (the benchmark includes this file by path), so it uses nothing but std and libc.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// How long a cold start may take on a slow machine (it is about 20 s here).
const START_LIMIT: Duration = Duration::from_secs(240);

pub struct Triton {
    child: Option<Child>,
    pub ports: Ports,
    tls: Option<(PathBuf, PathBuf)>,
    /// The niceness the server (re)starts with: on a machine it shares with the cameras, its
    /// start-up (a dozen Python processes importing their libraries) would otherwise starve them,
    /// which a server on its own machine does not.
    pub nice: i32,
}

/// A server's ports: gRPC, HTTP and metrics, consecutive.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub grpc: u16,
    pub http: u16,
    pub metrics: u16,
}

impl Ports {
    /// Three free loopback ports no other server of this process was given: servers started in
    /// parallel tests must not take each other's, even before they listen.
    pub fn reserve() -> Ports {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let _ = NEXT.compare_exchange(
            0,
            20_000 + (std::process::id() % 2000) as u16 * 8,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        loop {
            let base = NEXT.fetch_add(3, Ordering::SeqCst);
            assert!(base < 60_000, "no free ports left");
            let free = (base..base + 3).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
            if free {
                return Ports {
                    grpc: base,
                    http: base + 1,
                    metrics: base + 2,
                };
            }
        }
    }

    pub fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.grpc)
    }
}

/// The Python with nvidia-pytriton: `TRITON_PYTHON`, else the project's venv.
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("TRITON_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/triton-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup.sh (it installs nvidia-pytriton)",
        venv.display()
    );
    venv
}

impl Triton {
    /// Starts the server on `ports`, optionally with TLS on gRPC (certificate and key files),
    /// and waits until every model answers.
    pub fn start(ports: Ports, tls: Option<(PathBuf, PathBuf)>) -> Triton {
        let mut triton = Triton {
            child: None,
            ports,
            tls,
            nice: 0,
        };
        triton.restart();
        triton
    }

    /// Starts it again after [`kill`](Self::kill), on the same ports.
    pub fn restart(&mut self) {
        self.kill();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/triton_server.py");
        let mut command = Command::new("nice");
        command
            .args(["-n", &self.nice.to_string()])
            .arg(python())
            .arg(script)
            .args(["--grpc-port", &self.ports.grpc.to_string()])
            .args(["--http-port", &self.ports.http.to_string()])
            .args(["--metrics-port", &self.ports.metrics.to_string()]);
        if let Some((cert, key)) = &self.tls {
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        // Its own process group: Triton and its Python backend processes go with it. Its log (and
        // Triton's, which shares its output) goes to a file, read when it fails to start.
        // Readiness comes as a file the script writes: a line on the shared output can be cut in
        // two by one of Triton's.
        let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
        let log = target.join(format!("triton-{}.log", self.ports.grpc));
        let ready_file = target.join(format!("triton-{}.ready", self.ports.grpc));
        let _ = std::fs::remove_file(&ready_file);
        let log_file = std::fs::File::create(&log).expect("the Triton log file");
        command
            .arg("--ready-file")
            .arg(&ready_file)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("the Triton log file"))
            .stderr(log_file);
        let mut child = command.spawn().expect("the Triton script starts");
        let started = Instant::now();
        let outcome = loop {
            if ready_file.exists() {
                break Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                break Err(format!("Triton exited ({status})"));
            }
            if started.elapsed() > START_LIMIT {
                break Err(format!("Triton did not get ready within {START_LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.child = Some(child);
        if let Err(why) = outcome {
            self.kill();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "{why}; the end of its log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// Kills the server and everything it started, at once (a crash, not a shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals the process group the child leads; no memory is involved.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            // Its backend processes leave with the group; give the ports a moment to close.
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "grpcs" } else { "grpc" };
        let host = if self.tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{scheme}://{host}:{}", self.ports.grpc)
    }
}

impl Drop for Triton {
    fn drop(&mut self) {
        self.kill();
    }
}
