//! Work the caller may stop waiting for: building an ONNX Runtime session cannot be interrupted
//! (a large model takes seconds), but an element that is stopping must not wait for it. The work
//! runs on a thread of its own; the caller waits for its result only while it still wants it, and
//! an abandoned result is dropped by that thread when the work ends.
//!
//! The process waits for such work when it exits: the work runs inside ONNX Runtime, whose static
//! data the C runtime destroys at exit, in the reverse order of their creation. A handler
//! registered with `atexit` runs before the destructors of everything created before it, and
//! waits (at most [`EXIT_WAIT`]) for the work in flight. ONNX Runtime creates much of its static
//! data lazily, during its first session build, so the handler is registered when the first work
//! starts (after the library is loaded) and again when the first work has finished.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use crate::lock;

/// How often a waiting caller asks whether it still wants the result: the longest a stop waits.
const POLL: Duration = Duration::from_millis(5);

/// The longest process exit waits for work in flight.
const EXIT_WAIT: Duration = Duration::from_secs(60);

/// Work started and not yet finished, whether its caller still waits or not.
static IN_FLIGHT: Mutex<usize> = Mutex::new(0);
static FINISHED: Condvar = Condvar::new();
static EXIT_HANDLER: Once = Once::new();
static EXIT_HANDLER_AFTER_FIRST_WORK: Once = Once::new();
/// Work started, and work whose caller stopped waiting, since the process started.
static STARTED: AtomicU64 = AtomicU64::new(0);
static ABANDONED: AtomicU64 = AtomicU64::new(0);

/// Why [`run`] returned without a result.
#[derive(Debug, PartialEq, Eq)]
pub enum Abandoned {
    /// `abandon` said so; the work goes on and its result will be dropped.
    ByCaller,
    /// The thread could not start, or the work panicked.
    Failed(String),
}

/// Runs `work` on a thread named `name` and returns its result, unless `abandon` returns true
/// first (asked every few milliseconds). Call only after ONNX Runtime is loaded, so that the exit
/// handler is registered after its destructors (see the module's documentation).
pub fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
    abandon: &dyn Fn() -> bool,
) -> Result<T, Abandoned> {
    EXIT_HANDLER.call_once(|| {
        // SAFETY: registers a plain function with no arguments; failing only loses the wait.
        unsafe { libc::atexit(wait_at_exit) };
    });
    let (sender, receiver) = mpsc::sync_channel(1);
    *lock(&IN_FLIGHT) += 1;
    STARTED.fetch_add(1, Ordering::SeqCst);
    let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
        let outcome = panic::catch_unwind(AssertUnwindSafe(work));
        EXIT_HANDLER_AFTER_FIRST_WORK.call_once(|| {
            // SAFETY: as above.
            unsafe { libc::atexit(wait_at_exit) };
        });
        // Fails when the caller stopped waiting: the result is dropped here, on this thread.
        let _ = sender.send(outcome);
        finished();
    });
    if let Err(e) = spawned {
        finished();
        return Err(Abandoned::Failed(format!("could not start a thread: {e}")));
    }
    loop {
        match receiver.recv_timeout(POLL) {
            Ok(Ok(result)) => return Ok(result),
            Ok(Err(_)) => return Err(Abandoned::Failed("it panicked".into())),
            Err(RecvTimeoutError::Disconnected) => return Err(Abandoned::Failed("its thread ended".into())),
            Err(RecvTimeoutError::Timeout) if abandon() => {
                ABANDONED.fetch_add(1, Ordering::SeqCst);
                return Err(Abandoned::ByCaller);
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Work started with [`run`] since the process started.
pub fn started() -> u64 {
    STARTED.load(Ordering::SeqCst)
}

/// Work whose caller stopped waiting for it, since the process started.
pub fn abandoned() -> u64 {
    ABANDONED.load(Ordering::SeqCst)
}

/// Work started with [`run`] and still running, its result wanted or not.
pub fn in_flight() -> usize {
    *lock(&IN_FLIGHT)
}

fn finished() {
    *lock(&IN_FLIGHT) -= 1;
    FINISHED.notify_all();
}

extern "C" fn wait_at_exit() {
    let deadline = Instant::now() + EXIT_WAIT;
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    while *in_flight > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        in_flight = match FINISHED.wait_timeout(in_flight, left) {
            Ok((guard, _)) => guard,
            Err(e) => e.into_inner().0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn returns_the_result_while_wanted() {
        assert_eq!(run("test-work", || 7, &|| false), Ok(7));
    }

    #[test]
    fn an_abandoned_wait_returns_while_the_work_goes_on() {
        let release = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        struct Product(Arc<AtomicBool>);
        impl Drop for Product {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let (held, result) = (release.clone(), Product(dropped.clone()));
        let outcome = run(
            "test-work",
            move || {
                while !held.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                result
            },
            &|| true,
        );
        assert!(matches!(outcome, Err(Abandoned::ByCaller)));
        assert!(in_flight() >= 1, "the work is still running");
        assert!(!dropped.load(Ordering::SeqCst));
        release.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the abandoned result was never dropped"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_panic_is_a_failure_not_a_crash() {
        let outcome: Result<(), _> = run("test-work", || panic!("boom"), &|| false);
        assert!(matches!(outcome, Err(Abandoned::Failed(_))));
    }
}
