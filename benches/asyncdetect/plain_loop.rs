//! The plain ONNX Runtime loop the rates are compared with, alone or running beside the video.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gstasyncdetect::convert::FrameConverter;
use gstasyncdetect::geometry::{Fit, Placement};
use gstasyncdetect::preprocess::ChannelOrder;

use crate::pipelines::*;
use crate::turns::*;

/// The video of the inference-rate table.
pub const RATE_FRAME: &str = "format=I420,width=640,height=480";

/// The frame the inference-rate table feeds the element (the 640x480 I420 test card), converted
/// to the built-in model's input by the element's own converter: the plain loop runs the model on
/// exactly the tensor the element does. (A synthetic pattern made the model about 1.4 % faster than
/// this picture, whose detections give the model's own post-processing more to do.)
pub fn test_card_tensor() -> Vec<u8> {
    static TENSOR: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TENSOR
        .get_or_init(|| {
            let (buffer, info) = first_frame(&format!(
                "videotestsrc num-buffers=1 ! video/x-raw,{RATE_FRAME} ! appsink name=sink"
            ));
            let placement = Placement::new(info.width(), info.height(), None, 300, 300, Fit::Stretch);
            let (frame, stride) = FrameConverter::new(ChannelOrder::Rgb, 300, 300)
                .convert(buffer, &info, &placement)
                .expect("converts");
            let plane = frame.plane_data(0).expect("plane");
            plane
                .chunks(stride)
                .take(300)
                .flat_map(|row| &row[..300 * 3])
                .copied()
                .collect()
        })
        .clone()
}

/// The physical limit: the built-in model with the element's session settings, run in a bare loop
/// on the pre-processed test card.
pub struct PlainLoop {
    session: ort::session::Session,
    tensor: Vec<u8>,
}

impl PlainLoop {
    pub fn new(spinning: bool) -> Self {
        let environment = gstasyncdetect::engine::environment(None).expect("ONNX Runtime");
        let session = ort::session::Session::builder(&environment)
            .and_then(|b| Ok(b.with_intra_threads(0)?))
            .and_then(|b| Ok(b.with_intra_op_spinning(spinning)?))
            .and_then(|b| Ok(b.with_inter_op_spinning(spinning)?))
            .expect("builder")
            .commit_from_memory(gstasyncdetect::engine::DEFAULT_MODEL)
            .expect("session");
        PlainLoop {
            session,
            tensor: test_card_tensor(),
        }
    }

    pub fn run(&mut self) {
        let input = ort::value::TensorRef::from_array_view(([1usize, 300, 300, 3], self.tensor.as_slice()))
            .expect("tensor");
        let outputs = self.session.run(ort::inputs![input]).expect("runs");
        std::hint::black_box(outputs[2].try_extract_array::<f32>().expect("scores").sum());
    }

    /// Runs for `seconds` after one run to warm up (as an element's turn starts at its first
    /// result).
    pub fn turn(&mut self, seconds: f64) -> Tally {
        self.run();
        let start = Instant::now();
        let mut events = 0;
        while start.elapsed().as_secs_f64() < seconds {
            self.run();
            events += 1;
        }
        Tally {
            events,
            also: 0,
            seconds: start.elapsed().as_secs_f64(),
        }
    }
}

/// The plain loop's rate over `seconds` (a fresh session).
pub fn plain_loop_rate(seconds: f64, spinning: bool) -> f64 {
    PlainLoop::new(spinning).turn(seconds).rate()
}

/// The plain loop on a thread with the priority the element gives its inference threads by
/// default (nice 19, SCHED_BATCH), running only while switched on: what running the model at all
/// costs the video, through the CPU, caches and memory bandwidth it shares, without the element.
pub struct ModelBeside {
    on: Arc<std::sync::atomic::AtomicBool>,
    runs: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ModelBeside {
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let (on, runs, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (is_on, counted, stopped) = (on.clone(), runs.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            gstasyncdetect::priority::lower_priority(19).expect("lower priority");
            let mut plain = PlainLoop::new(false);
            while !stopped.load(Ordering::Relaxed) {
                if is_on.load(Ordering::Relaxed) {
                    plain.run();
                    counted.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        ModelBeside {
            on,
            runs,
            stop,
            thread: Some(thread),
        }
    }

    /// Runs `measure` with the model running beside it (from its first run on).
    pub fn during<T>(&self, measure: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering;
        self.on.store(true, Ordering::Relaxed);
        next_event(&|| self.runs.load(Ordering::Relaxed));
        let result = measure();
        self.on.store(false, Ordering::Relaxed);
        result
    }
}

impl Drop for ModelBeside {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
