//! The ONNX Runtime side: loading the runtime library once per process, building a session for a
//! model and running it on a pre-processed image. No GStreamer types.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, ArrayViewD, Axis, CowArray, IxDyn};
use once_cell::sync::Lazy;
use ort::environment::Environment;
use ort::session::{RunOptions, Session, SessionOutputs};
use ort::value::{PrimitiveTensorElementType, TensorElementType, TensorRef, ValueType};

use crate::decode::{Decoder, DecoderChoice, OutputInfo, RawDetection};
use crate::detection::Detection;
use crate::labels::Labels;
use crate::lock;
use crate::preprocess::{ElementType, InputOverrides, InputSpec};

/// The built-in model: SSD MobileNet v2 COCO (see `models/README.md`).
pub static DEFAULT_MODEL: &[u8] = include_bytes!("../models/ssd_mobilenet_v2_coco_quant.onnx");
/// Its class names.
pub static DEFAULT_LABELS: &str = include_str!("../models/coco_labels.txt");

/// The libraries tried when neither the caller nor `ORT_DYLIB_PATH` names one: the one the Debian
/// package installs beside the plugin (the version it was tested with), then the dynamic loader's
/// search path, which finds what `scripts/setup.sh` installed.
const DEFAULT_LIBRARIES: [&str; 3] = [
    concat!(env!("PACKAGED_ORT_DIR"), "/libonnxruntime.so"),
    "libonnxruntime.so",
    "libonnxruntime.so.1",
];

/// The library the process-wide environment was created from, once it has been.
static LOADED_LIBRARY: once_cell::sync::OnceCell<PathBuf> = once_cell::sync::OnceCell::new();

/// Which ONNX Runtime library this process loaded (`None` until a model has been loaded).
pub fn loaded_library() -> Option<&'static Path> {
    LOADED_LIBRARY.get().map(PathBuf::as_path)
}

#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// The ONNX Runtime shared library could not be loaded or initialised.
    Runtime(String),
    /// The model could not be read or parsed, or its inputs/outputs cannot be used.
    Model(String),
    /// Running the model failed.
    Inference(String),
    /// The run was interrupted by [`RunCanceller::cancel`] (stop, flush, another model).
    Cancelled,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Runtime(m) | EngineError::Model(m) | EngineError::Inference(m) => f.write_str(m),
            EngineError::Cancelled => f.write_str("the run was interrupted"),
        }
    }
}

impl std::error::Error for EngineError {}

// ONNX Runtime allows one environment per process; it lives for the rest of the process.
static ENVIRONMENT: Lazy<Mutex<Option<Environment>>> = Lazy::new(|| Mutex::new(None));

/// The process-wide ONNX Runtime environment, loading the library on first use from `library`,
/// else `ORT_DYLIB_PATH`, else the loader's search path. Once one library is loaded, later calls
/// reuse it whatever they name. A failure is not remembered, so a corrected path can be retried.
pub fn environment(library: Option<&Path>) -> Result<Environment, EngineError> {
    let mut guard = lock(&ENVIRONMENT);
    if let Some(environment) = guard.as_ref() {
        return Ok(environment.clone());
    }
    let candidates: Vec<PathBuf> = match (library, std::env::var_os("ORT_DYLIB_PATH")) {
        (Some(path), _) => vec![path.to_path_buf()],
        (None, Some(path)) if !path.is_empty() => vec![PathBuf::from(path)],
        _ => DEFAULT_LIBRARIES
            .iter()
            .map(PathBuf::from)
            // A packaged library that is not there is not worth a line in the error.
            .filter(|path| path.is_relative() || path.exists())
            .collect(),
    };
    // ONNX Runtime starts a thread that lives as long as the process and inherits the name of the
    // thread creating the environment: create it from one named after ONNX Runtime, not from
    // whichever element's inference thread came first.
    let created = std::thread::Builder::new()
        .name("onnxruntime".into())
        .spawn(move || create_environment(&candidates))
        .map_err(|e| EngineError::Runtime(format!("could not start a thread: {e}")))?
        .join()
        .map_err(|_| EngineError::Runtime("ONNX Runtime panicked while starting".into()))??;
    *guard = Some(created.clone());
    Ok(created)
}

fn create_environment(candidates: &[PathBuf]) -> Result<Environment, EngineError> {
    let mut failures = Vec::new();
    for candidate in candidates {
        // A path (not a bare name for the loader's search) must be a regular file: loading a
        // FIFO or a device would block or read without end.
        if candidate.components().count() > 1
            && let Err(e) = crate::files::check_regular_file(candidate, "library", u64::MAX)
        {
            failures.push(e);
            continue;
        }
        match ort::init_from(candidate) {
            Ok(builder) => {
                let _ = LOADED_LIBRARY.set(candidate.clone());
                return builder
                    .with_name("asyncdetect")
                    .build()
                    .map_err(|e| EngineError::Runtime(format!("ONNX Runtime failed to start: {e}")));
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(EngineError::Runtime(format!(
        "could not load the ONNX Runtime library ({}); install it with scripts/setup.sh or point \
         ORT_DYLIB_PATH or the onnxruntime-library property at libonnxruntime.so",
        failures.join("; ")
    )))
}

/// Where the model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// The SSD MobileNet v2 COCO model built into the plugin.
    BuiltIn,
    File(PathBuf),
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::BuiltIn => f.write_str("built-in SSD MobileNet v2 COCO"),
            ModelSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Where ONNX Runtime runs the model: its execution provider, named as GStreamer's
/// `onnxinference` and ort name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Accelerator {
    #[default]
    Cpu,
    OpenVino,
    Cuda,
    TensorRt,
}

impl Accelerator {
    pub const ALL: [Accelerator; 4] = [
        Accelerator::Cpu,
        Accelerator::OpenVino,
        Accelerator::Cuda,
        Accelerator::TensorRt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Accelerator::Cpu => "CPU",
            Accelerator::OpenVino => "OpenVINO",
            Accelerator::Cuda => "CUDA",
            Accelerator::TensorRt => "TensorRT",
        }
    }

    /// Whether the loaded ONNX Runtime was built with this execution provider.
    fn available(self) -> bool {
        use ort::ep::ExecutionProvider;
        match self {
            Accelerator::Cpu => true,
            Accelerator::OpenVino => ort::ep::OpenVINO::is_available().unwrap_or(false),
            Accelerator::Cuda => ort::ep::CUDA::is_available().unwrap_or(false),
            Accelerator::TensorRt => ort::ep::TensorRT::is_available().unwrap_or(false),
        }
    }

    /// The execution provider to register, failing the session when it cannot be.
    fn provider(self) -> Option<ort::ep::ExecutionProviderDispatch> {
        match self {
            Accelerator::Cpu => None,
            Accelerator::OpenVino => Some(ort::ep::OpenVINO::default().build().error_on_failure()),
            Accelerator::Cuda => Some(ort::ep::CUDA::default().build().error_on_failure()),
            Accelerator::TensorRt => Some(ort::ep::TensorRT::default().build().error_on_failure()),
        }
    }
}

/// The execution providers the loaded ONNX Runtime has, of those the element can use.
pub fn available_accelerators() -> Vec<Accelerator> {
    Accelerator::ALL.into_iter().filter(|a| a.available()).collect()
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelOptions {
    /// Intra-op threads; 0 lets ONNX Runtime choose.
    pub threads: usize,
    /// Models naming the same instance share one session whatever else they name: the first to
    /// load decides the model, threads and execution provider. `None`: shared by model and threads.
    pub instance_id: Option<String>,
    /// How many frames the shared instance may run at once (each needs its own session state);
    /// 0: see [`ModelOptions::lane_count`].
    pub lanes: usize,
    pub input: InputOverrides,
    pub library: Option<PathBuf>,
    pub decoder: DecoderChoice,
    /// Where the model runs (the CPU unless an execution provider is asked for).
    pub accelerator: Accelerator,
}

impl ModelOptions {
    /// Neither `threads` nor `lanes` set: the shared instance picks them from its users. One
    /// stream gets one lane using every core (the shortest time per frame); once several streams
    /// share the instance, their frames run on lanes of one thread each, cores + 1 of them, which
    /// keeps every core busy (one wide lane leaves cores idle between ONNX Runtime's small
    /// parallel sections: measured with eight cameras on 2 cores, 0.6 of the plain loop's rate
    /// against 0.9 for narrow lanes).
    pub fn adaptive(&self) -> bool {
        self.threads == 0 && self.lanes == 0
    }

    /// The most lanes to open: as asked, or enough `threads`-wide lanes to fill the cores plus
    /// one, which keeps them busy while a lane's thread is between frames (measured with eight
    /// cameras on 2 cores: 3 lanes of 1 thread ran 7 % more inferences than 2); when
    /// [`adaptive`](Self::adaptive), the wide lane and cores + 1 narrow ones. Lanes open only
    /// when frames wait and every open lane is busy, so a single stream keeps one.
    pub fn lane_count(&self) -> usize {
        let cores = || std::thread::available_parallelism().map_or(1, |n| n.get());
        match (self.lanes, self.threads) {
            (0, 0) => 1 + cores() + 1,
            (0, threads) => (cores() / threads).max(1) + 1,
            (lanes, _) => lanes,
        }
    }
}

/// What makes two loads the same session: the instance id the user gave, else the model's bytes
/// (the built-in model, or a file as it is now) and the session settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SessionKey {
    Instance(String),
    Model {
        source: SourceKey,
        threads: usize,
        lanes: usize,
        accelerator: Accelerator,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SourceKey {
    BuiltIn,
    File {
        path: PathBuf,
        len: u64,
        modified: Option<std::time::SystemTime>,
    },
}

/// The most frames run together when a model takes a batch of any size.
pub const MAX_BATCH: usize = 16;

/// An input tensor's data, one frame.
#[derive(Debug, Clone)]
enum TensorData {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

impl TensorData {
    fn same_kind(&self, other: &TensorData) -> bool {
        matches!(
            (self, other),
            (TensorData::U8(_), TensorData::U8(_)) | (TensorData::F32(_), TensorData::F32(_))
        )
    }
}

/// Lets other threads interrupt one model user's runs (an element's): stopping, flushing or
/// loading another model must not wait for an inference that may take seconds. Each frame is
/// queued under the canceller's current epoch; [`cancel`](Self::cancel) starts a new epoch, so
/// every frame queued before it is dropped from the queue, and a run whose frames are all such
/// is told to stop by ONNX Runtime (between two of the model's operators).
#[derive(Default)]
pub struct RunCanceller {
    epoch: AtomicU64,
    /// The sessions this user's models run on (two during a model change).
    sessions: Mutex<Vec<Weak<SharedSession>>>,
}

impl RunCanceller {
    /// Interrupts every run and queued frame of this user from before the call.
    pub fn cancel(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        // Collected first: the session's queue lock is never taken while holding ours.
        let sessions: Vec<Arc<SharedSession>> = {
            let mut sessions = lock(&self.sessions);
            sessions.retain(|s| s.strong_count() > 0);
            sessions.iter().filter_map(Weak::upgrade).collect()
        };
        for session in sessions {
            session.interrupt_cancelled();
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn runs_on(&self, session: &Arc<SharedSession>) {
        let mut sessions = lock(&self.sessions);
        sessions.retain(|s| s.strong_count() > 0);
        if !sessions
            .iter()
            .any(|s| std::ptr::eq(s.as_ptr(), Arc::as_ptr(session)))
        {
            sessions.push(Arc::downgrade(session));
        }
    }
}

/// Whose a queued or running frame is, and under which of its canceller's epochs it was queued.
#[derive(Clone)]
struct Owner {
    canceller: Arc<RunCanceller>,
    epoch: u64,
}

impl Owner {
    fn cancelled(&self) -> bool {
        self.canceller.epoch() != self.epoch
    }
}

/// One frame waiting for the session.
struct Request {
    ticket: u64,
    shape: [usize; 4],
    data: TensorData,
    owner: Owner,
}

#[derive(Debug, Clone, PartialEq)]
enum RunError {
    Failed(String),
    Cancelled,
}

type RunOutcome = Result<Vec<ArrayD<f32>>, RunError>;

/// A batch running on a lane: how to interrupt it, and whose frames it holds.
struct RunningBatch {
    options: Arc<RunOptions>,
    owners: Vec<Owner>,
}

#[derive(Default)]
struct RunQueue {
    waiting: VecDeque<Request>,
    /// Outcomes by ticket, with the frame's tensor buffer handed back for reuse.
    finished: HashMap<u64, (RunOutcome, TensorData)>,
    next_ticket: u64,
    /// Lanes not running a batch now.
    free_lanes: Vec<usize>,
    /// Lanes opened so far (lanes open on demand, when frames wait and every open lane is busy).
    opened: usize,
    /// No more lanes than this: the maximum, or fewer once opening one failed.
    lane_limit: usize,
    /// Why the last lane could not be opened, until a model reports it.
    lane_error: Option<String>,
    /// What runs on each busy lane.
    running: HashMap<usize, RunningBatch>,
}

/// One model instance shared by every element that names it, and the queue in front of it. Frames
/// are served oldest first: each stream waits for its own result before it queues another, so with
/// every stream busy they take turns and none starves (a plain mutex lets the thread that just
/// released it take it again). Whoever reaches the head of the queue while a lane is free runs the
/// frames there on that lane, several at once when the model takes a batch of any size, and hands
/// every one its own outputs. A lane is one ONNX Runtime session of the model: ONNX Runtime's Rust
/// API runs a session for one caller at a time, so running two frames at once takes two.
pub struct SharedSession {
    /// The model's inputs and outputs as the first session declared them: read without taking a
    /// lane, which a running inference holds.
    signature: Signature,
    /// How long its warm-up run took: elements joining later need no warm-up of their own (and
    /// would queue it behind the others' frames).
    warm_up_time: OnceLock<Duration>,
    lanes: Vec<OnceLock<Mutex<Session>>>,
    /// Builds another session of the model for a new lane.
    open_lane: Box<dyn Fn() -> Result<Session, String> + Send + Sync>,
    /// Lane 0 uses every core and serves a single user; several users' frames go to the other
    /// lanes, one thread each (see [`ModelOptions::adaptive`]).
    adaptive: bool,
    /// Models (elements) using the session now.
    users: AtomicUsize,
    queue: Mutex<RunQueue>,
    turn: Condvar,
    max_batch: usize,
    runs: AtomicU64,
    batched_frames: AtomicU64,
}

impl SharedSession {
    fn new(
        first: Session,
        max_lanes: usize,
        adaptive: bool,
        open_lane: Box<dyn Fn() -> Result<Session, String> + Send + Sync>,
    ) -> SharedSession {
        // A batch dimension that is not fixed (-1) takes several frames.
        let batchable = first.inputs().first().is_some_and(|input| {
            input
                .dtype()
                .tensor_shape()
                .is_some_and(|shape| shape.first().is_some_and(|&d| d < 0))
        });
        let signature = Signature {
            inputs: first
                .inputs()
                .iter()
                .map(|input| (input.name().to_string(), input.dtype().clone()))
                .collect(),
            outputs: first
                .outputs()
                .iter()
                .map(|o| OutputInfo {
                    name: o.name().to_string(),
                    shape: o.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default(),
                })
                .collect(),
        };
        let lanes: Vec<OnceLock<Mutex<Session>>> = (0..max_lanes.max(1)).map(|_| OnceLock::new()).collect();
        let _ = lanes[0].set(Mutex::new(first));
        SharedSession {
            signature,
            warm_up_time: OnceLock::new(),
            queue: Mutex::new(RunQueue {
                free_lanes: vec![0],
                opened: 1,
                lane_limit: lanes.len(),
                ..Default::default()
            }),
            lanes,
            open_lane,
            adaptive,
            users: AtomicUsize::new(0),
            turn: Condvar::new(),
            max_batch: if batchable { MAX_BATCH } else { 1 },
            runs: AtomicU64::new(0),
            batched_frames: AtomicU64::new(0),
        }
    }

    /// Queues one frame and returns its outputs (batch dimension 1) once it has been run, or
    /// [`RunError::Cancelled`] once `canceller` interrupts it.
    /// Also hands back `data`, so the caller can fill it again without a new allocation.
    fn run(
        &self,
        shape: [usize; 4],
        data: TensorData,
        canceller: &Arc<RunCanceller>,
    ) -> (RunOutcome, TensorData) {
        let owner = Owner {
            canceller: canceller.clone(),
            epoch: canceller.epoch(),
        };
        let mut queue = lock(&self.queue);
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push_back(Request {
            ticket,
            shape,
            data,
            owner,
        });
        loop {
            if let Some(outcome) = queue.finished.remove(&ticket) {
                return outcome;
            }
            if let Some(position) = queue
                .waiting
                .iter()
                .position(|r| r.ticket == ticket && r.owner.cancelled())
                && let Some(request) = queue.waiting.remove(position)
            {
                // Another frame may be at the head now.
                self.turn.notify_all();
                return (Err(RunError::Cancelled), request.data);
            }
            let at_head = queue.waiting.front().is_some_and(|r| r.ticket == ticket);
            let lane = if at_head { self.free_lane(&mut queue) } else { None };
            if let Some(lane) = lane {
                let batch = self.take_batch(&mut queue);
                // Fatal errors only in ONNX Runtime's own log: an interrupted run is not an error
                // to print, and a failed one reaches the element as an error anyway.
                let options = RunOptions::new().and_then(|mut options| {
                    options.set_log_level(ort::logging::LogLevel::Fatal)?;
                    Ok(options)
                });
                let options = match options {
                    Ok(options) => Arc::new(options),
                    Err(e) => {
                        let error = RunError::Failed(format!("could not prepare a run: {e}"));
                        for request in batch {
                            queue
                                .finished
                                .insert(request.ticket, (Err(error.clone()), request.data));
                        }
                        queue.free_lanes.push(lane);
                        self.turn.notify_all();
                        continue;
                    }
                };
                queue.running.insert(
                    lane,
                    RunningBatch {
                        options: options.clone(),
                        owners: batch.iter().map(|r| r.owner.clone()).collect(),
                    },
                );
                drop(queue);
                // The next frame may be at the head now, and another lane free for it.
                self.turn.notify_all();
                if let Err(e) = self.ensure_lane(lane) {
                    // No more lanes than the ones that opened; the frames go back to the head.
                    queue = lock(&self.queue);
                    queue.running.remove(&lane);
                    queue.lane_limit = lane;
                    queue.opened = lane;
                    for request in batch.into_iter().rev() {
                        queue.waiting.push_front(request);
                    }
                    queue.lane_error = Some(e);
                    continue;
                }
                let outcomes =
                    panic::catch_unwind(AssertUnwindSafe(|| self.run_batch(lane, &batch, &options)))
                        .unwrap_or_else(|_| {
                            batch
                                .iter()
                                .map(|_| Err(RunError::Failed("ONNX Runtime panicked".to_string())))
                                .collect()
                        });
                queue = lock(&self.queue);
                queue.running.remove(&lane);
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    // A run told to stop fails; its frames were cancelled, not broken.
                    let outcome = match outcome {
                        Err(_) if request.owner.cancelled() => Err(RunError::Cancelled),
                        other => other,
                    };
                    queue.finished.insert(request.ticket, (outcome, request.data));
                }
                queue.free_lanes.push(lane);
                self.turn.notify_all();
                continue;
            }
            queue = self.turn.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A lane for the frames at the head of the queue: a free one, or a new one while fewer than
    /// the limit are open. An adaptive instance keeps lane 0 for a single user and the others for
    /// several, unless the others could not be opened.
    fn free_lane(&self, queue: &mut RunQueue) -> Option<usize> {
        let usable: fn(usize) -> bool = if !self.adaptive {
            |_| true
        } else if self.users.load(Ordering::Relaxed) > 1 && queue.lane_limit > 1 {
            |lane| lane != 0
        } else {
            |lane| lane == 0
        };
        if let Some(index) = queue.free_lanes.iter().position(|&lane| usable(lane)) {
            return Some(queue.free_lanes.swap_remove(index));
        }
        if queue.opened < queue.lane_limit && usable(queue.opened) {
            queue.opened += 1;
            return Some(queue.opened - 1);
        }
        None
    }

    /// Opens lane `lane` if it is not open yet.
    fn ensure_lane(&self, lane: usize) -> Result<(), String> {
        let slot = self.lanes.get(lane).ok_or_else(|| format!("no lane {lane}"))?;
        if slot.get().is_none() {
            let session = (self.open_lane)()?;
            let _ = slot.set(Mutex::new(session));
        }
        Ok(())
    }

    /// The head of the queue and the frames right behind it that fit in the same batch. Frames
    /// cancelled while they waited are handed back to their owners instead.
    fn take_batch(&self, queue: &mut RunQueue) -> Vec<Request> {
        let mut batch: Vec<Request> = Vec::new();
        while let Some(next) = queue.waiting.front() {
            if next.owner.cancelled() {
                if let Some(request) = queue.waiting.pop_front() {
                    queue
                        .finished
                        .insert(request.ticket, (Err(RunError::Cancelled), request.data));
                }
                continue;
            }
            let fits = batch.first().is_none_or(|first| {
                batch.len() < self.max_batch && first.shape == next.shape && first.data.same_kind(&next.data)
            });
            if !fits {
                break;
            }
            batch.extend(queue.waiting.pop_front());
        }
        batch
    }

    /// Stops every running batch whose frames were all cancelled, and wakes the waiting callers so
    /// cancelled ones leave the queue.
    fn interrupt_cancelled(&self) {
        let queue = lock(&self.queue);
        for running in queue.running.values() {
            if running.owners.iter().all(Owner::cancelled) {
                // Failing to set the flag only means the run ends in its own time.
                let _ = running.options.terminate();
            }
        }
        drop(queue);
        self.turn.notify_all();
    }

    fn run_batch(&self, lane: usize, batch: &[Request], options: &RunOptions) -> Vec<RunOutcome> {
        let fail = |e: String| batch.iter().map(|_| Err(RunError::Failed(e.clone()))).collect();
        let Some(first) = batch.first() else {
            return Vec::new();
        };
        let mut shape = first.shape;
        shape[0] = batch.len();
        let Some(session) = self.lanes.get(lane).and_then(OnceLock::get) else {
            return fail(format!("lane {lane} is not open"));
        };
        let mut session = lock(session);
        let outputs = match &first.data {
            TensorData::U8(_) => {
                let parts: Vec<&[u8]> = batch
                    .iter()
                    .filter_map(|r| match &r.data {
                        TensorData::U8(d) => Some(d.as_slice()),
                        TensorData::F32(_) => None,
                    })
                    .collect();
                run_joined(&mut session, shape, &parts, options)
            }
            TensorData::F32(_) => {
                let parts: Vec<&[f32]> = batch
                    .iter()
                    .filter_map(|r| match &r.data {
                        TensorData::F32(d) => Some(d.as_slice()),
                        TensorData::U8(_) => None,
                    })
                    .collect();
                run_joined(&mut session, shape, &parts, options)
            }
        };
        drop(session);
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.batched_frames
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        match outputs {
            Ok(per_frame) => per_frame.into_iter().map(Ok).collect(),
            Err(e) => fail(e),
        }
    }
}

/// Runs the session on the frames `parts` joined along the batch dimension (`shape` already says
/// how many) and returns each frame's outputs.
fn run_joined<T: PrimitiveTensorElementType + fmt::Debug + Copy + 'static>(
    session: &mut Session,
    shape: [usize; 4],
    parts: &[&[T]],
    options: &RunOptions,
) -> Result<Vec<Vec<ArrayD<f32>>>, String> {
    let joined: Vec<T>;
    let data: &[T] = match parts {
        [one] => one,
        _ => {
            joined = parts.concat();
            &joined
        }
    };
    let tensor = TensorRef::from_array_view((shape, data)).map_err(|e| e.to_string())?;
    let outputs = session
        .run_with_options(ort::inputs![tensor], options)
        .map_err(|e| e.to_string())?;
    split_outputs(&outputs, parts.len())
}

/// Every output as f32 arrays per frame of a batch of `frames`: the batch dimension is split so
/// each frame gets outputs with batch dimension 1, as it would running alone.
fn split_outputs(outputs: &SessionOutputs<'_>, frames: usize) -> Result<Vec<Vec<ArrayD<f32>>>, String> {
    let arrays = outputs_as_f32(outputs).map_err(|e| e.to_string())?;
    let mut per_frame: Vec<Vec<ArrayD<f32>>> = vec![Vec::with_capacity(arrays.len()); frames];
    for array in arrays {
        if frames == 1 {
            per_frame[0].push(array.into_owned());
            continue;
        }
        if array.ndim() == 0 || array.shape()[0] != frames {
            return Err(format!(
                "output of shape {:?} has no batch dimension of {frames}",
                array.shape()
            ));
        }
        for (index, outputs) in per_frame.iter_mut().enumerate() {
            outputs.push(array.index_axis(Axis(0), index).insert_axis(Axis(0)).to_owned());
        }
    }
    Ok(per_frame)
}

/// A model's inputs and outputs (names, types, shapes) as its session declares them.
struct Signature {
    inputs: Vec<(String, ValueType)>,
    outputs: Vec<OutputInfo>,
}

/// One session key's place in [`SESSIONS`]: its own lock, held while the session is built, so
/// two elements loading the same model build it once while loads of other models go on.
type SessionSlot = Arc<Mutex<Weak<SharedSession>>>;

/// Sessions in use, so elements running the same model share one copy of its weights and one
/// thread pool. Held weakly: a session goes when its last model does. The map's own lock is held
/// only to find a key's slot, never while a session is built or run.
static SESSIONS: Lazy<Mutex<HashMap<SessionKey, SessionSlot>>> = Lazy::new(Mutex::default);

/// The session for `key`: the one in use, or a new one from `build`.
fn shared_session(
    key: SessionKey,
    build: impl FnOnce() -> Result<SharedSession, EngineError>,
) -> Result<Arc<SharedSession>, EngineError> {
    let slot = {
        let mut sessions = lock(&SESSIONS);
        // Forget keys whose session is gone, unless someone is building one there now.
        sessions.retain(|_, slot| slot.try_lock().map_or(true, |session| session.strong_count() > 0));
        sessions.entry(key).or_default().clone()
    };
    let mut current = lock(&slot);
    if let Some(shared) = current.upgrade() {
        return Ok(shared);
    }
    let shared = Arc::new(build()?);
    *current = Arc::downgrade(&shared);
    Ok(shared)
}

/// Counts the models (elements) using one session, and how it has been run.
#[derive(Clone, Default)]
pub struct SessionUsers(Weak<SharedSession>);

impl SessionUsers {
    /// Models currently sharing the session (0 once it is gone).
    pub fn count(&self) -> usize {
        self.0.upgrade().map_or(0, |s| s.users.load(Ordering::Relaxed))
    }

    /// Lanes (sessions of the model) open now.
    pub fn lanes_open(&self) -> usize {
        self.0.upgrade().map_or(0, |s| lock(&s.queue).opened)
    }

    /// Session runs so far and the frames they held (more frames than runs: batching happened).
    pub fn runs(&self) -> (u64, u64) {
        self.0.upgrade().map_or((0, 0), |s| {
            (
                s.runs.load(Ordering::Relaxed),
                s.batched_frames.load(Ordering::Relaxed),
            )
        })
    }
}

impl fmt::Debug for SessionUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionUsers({})", self.count())
    }
}

/// A loaded model, ready to run. Owned by one thread at a time; its session may be shared.
pub struct Model {
    session: Arc<SharedSession>,
    canceller: Arc<RunCanceller>,
    /// The last frame's tensor buffer, filled again for the next one.
    spare: Option<TensorData>,
    input: InputSpec,
    decoder: Decoder,
    labels: Labels,
    /// How long the run in [`load`](Self::load) took: a first estimate of the model's cost.
    first_run: Duration,
}

fn element_type(ty: &TensorElementType) -> Option<ElementType> {
    match ty {
        TensorElementType::Uint8 => Some(ElementType::U8),
        TensorElementType::Float32 => Some(ElementType::F32),
        _ => None,
    }
}

impl Model {
    /// Builds the session, works out the input layout and picks the output decoder, then runs the
    /// model once so the first real frame does not pay for ONNX Runtime's lazy initialisation.
    /// Building a session cannot be interrupted: it runs on a thread of its own, and once
    /// `abandon` returns true the load returns [`EngineError::Cancelled`] without waiting for it.
    /// `warm_up` can interrupt the first run, `frames` every later one.
    pub fn load(
        source: &ModelSource,
        labels: Labels,
        options: &ModelOptions,
        warm_up: &Arc<RunCanceller>,
        frames: &Arc<RunCanceller>,
        abandon: &dyn Fn() -> bool,
    ) -> Result<Model, EngineError> {
        let environment = environment(options.library.as_deref())?;
        let key = match &options.instance_id {
            Some(id) => SessionKey::Instance(id.clone()),
            None => SessionKey::Model {
                source: match source {
                    ModelSource::BuiltIn => SourceKey::BuiltIn,
                    ModelSource::File(path) => {
                        let metadata = std::fs::metadata(path).map_err(|e| {
                            EngineError::Model(format!("could not read model {}: {e}", path.display()))
                        })?;
                        SourceKey::File {
                            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()),
                            len: metadata.len(),
                            modified: metadata.modified().ok(),
                        }
                    }
                },
                threads: options.threads,
                lanes: options.lane_count(),
                accelerator: options.accelerator,
            },
        };
        let (owned_source, owned_options) = (source.clone(), options.clone());
        let shared = crate::abandonable::run(
            "asyncdetect-load",
            move || shared_session(key, || build_session(&owned_source, &owned_options, &environment)),
            abandon,
        )
        .map_err(|why| match why {
            crate::abandonable::Abandoned::ByCaller => EngineError::Cancelled,
            crate::abandonable::Abandoned::Failed(e) => {
                EngineError::Model(format!("loading model {source} failed: {e}"))
            }
        })??;
        let (mut input, decoder) = describe(&shared.signature, source, options)?;
        // Channel order and float normalisation left at the defaults get what the model family
        // is trained with.
        if options.input.channel_order.is_none() {
            input.channel_order = decoder.preferred_channel_order();
        }
        if let (Some((mean, std)), ElementType::F32, None, None) = (
            decoder.preferred_normalisation(),
            input.element_type,
            options.input.mean,
            options.input.std,
        ) {
            input.mean = mean;
            input.std = std;
        }

        warm_up.runs_on(&shared);
        frames.runs_on(&shared);
        // Counted until the model drops.
        shared.users.fetch_add(1, Ordering::Relaxed);
        let mut model = Model {
            session: shared,
            canceller: warm_up.clone(),
            spare: None,
            input,
            decoder,
            labels,
            first_run: Duration::ZERO,
        };
        model.first_run = match model.session.warm_up_time.get() {
            Some(&time) => time,
            None => {
                let blank = vec![0u8; model.input.tensor_len()];
                let started = Instant::now();
                model
                    .run_raw(&blank, model.input.width * 3)
                    .map_err(|e| match e {
                        EngineError::Cancelled => EngineError::Cancelled,
                        e => EngineError::Model(format!("model {source} failed its first run: {e}")),
                    })?;
                *model.session.warm_up_time.get_or_init(|| started.elapsed())
            }
        };
        model.canceller = frames.clone();
        Ok(model)
    }

    /// How long the session's first run (on a blank frame, while it loaded) took.
    pub fn first_run_time(&self) -> Duration {
        self.first_run
    }

    /// How many models share this one's session.
    pub fn session_users(&self) -> SessionUsers {
        SessionUsers(Arc::downgrade(&self.session))
    }

    pub fn input(&self) -> &InputSpec {
        &self.input
    }

    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Runs the model on a packed 3-channel image of the input's size and channel order (rows
    /// `stride` bytes apart) and returns every detection, labelled, before any filtering.
    pub fn detect(&mut self, image: &[u8], stride: usize) -> Result<Vec<Detection>, EngineError> {
        let raw = self.run_raw(image, stride)?;
        Ok(raw
            .into_iter()
            .map(|r| Detection {
                class_id: r.class_id,
                label: self.labels.name_or_id(r.class_id),
                confidence: r.confidence,
                bbox: r.bbox,
            })
            .collect())
    }

    fn run_raw(&mut self, image: &[u8], stride: usize) -> Result<Vec<RawDetection>, EngineError> {
        let fill_error = |e: crate::preprocess::InputError| EngineError::Inference(e.to_string());
        // The previous frame's buffer, when it has the right type: a 300x300 frame is a 270 KB
        // allocation (an mmap and its page faults) otherwise.
        let data = match (self.input.element_type, self.spare.take()) {
            (ElementType::U8, spare) => {
                let mut tensor = match spare {
                    Some(TensorData::U8(tensor)) => tensor,
                    _ => Vec::new(),
                };
                self.input
                    .fill_u8(image, stride, &mut tensor)
                    .map_err(fill_error)?;
                TensorData::U8(tensor)
            }
            (ElementType::F32, spare) => {
                let mut tensor = match spare {
                    Some(TensorData::F32(tensor)) => tensor,
                    _ => Vec::new(),
                };
                self.input
                    .fill_f32(image, stride, &mut tensor)
                    .map_err(fill_error)?;
                TensorData::F32(tensor)
            }
        };
        let (outcome, data) = self.session.run(self.input.tensor_shape(), data, &self.canceller);
        self.spare = Some(data);
        let arrays = outcome.map_err(|e| match e {
            RunError::Failed(e) => EngineError::Inference(e),
            RunError::Cancelled => EngineError::Cancelled,
        })?;
        let views: Vec<ArrayViewD<'_, f32>> = arrays.iter().map(|a| a.view()).collect();
        self.decoder
            .decode(&views)
            .map_err(|e| EngineError::Inference(format!("decoding the outputs failed: {e}")))
    }

    /// Why the shared instance could not open another lane, once (the first model to ask gets it).
    pub fn take_lane_error(&self) -> Option<String> {
        lock(&self.session.queue).lane_error.take()
    }

    /// Sets the overlap above which the YOLO decoder suppresses a box of the same class.
    pub fn set_nms_iou(&mut self, iou: f32) {
        self.decoder.set_nms_iou(iou);
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.session.users.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Builds a model's first session, and how to open more lanes of it.
fn build_session(
    source: &ModelSource,
    options: &ModelOptions,
    environment: &Environment,
) -> Result<SharedSession, EngineError> {
    let bytes: Arc<Cow<'static, [u8]>> = Arc::new(match source {
        ModelSource::BuiltIn => Cow::Borrowed(DEFAULT_MODEL),
        ModelSource::File(path) => {
            let bytes = crate::files::read_regular_file(path, "model", crate::files::MAX_MODEL_BYTES)
                .map_err(EngineError::Model)?;
            if let Some(problem) = crate::files::not_onnx(&bytes) {
                return Err(EngineError::Model(format!("model {} {problem}", path.display())));
            }
            Cow::Owned(bytes)
        }
    });
    let accelerator = options.accelerator;
    if !accelerator.available() {
        let library =
            loaded_library().map_or_else(|| "ONNX Runtime".to_string(), |p| p.display().to_string());
        let has: Vec<&str> = available_accelerators().iter().map(|a| a.name()).collect();
        return Err(EngineError::Runtime(format!(
            "execution-provider={}: the ONNX Runtime loaded ({library}) was not built with the {} execution \
             provider (it has {}); point onnxruntime-library at a build that has it (README, \"Accelerators\")",
            accelerator.name().to_lowercase(),
            accelerator.name(),
            has.join(", ")
        )));
    }
    let adaptive = options.adaptive();
    let first = session_from(environment, options.threads, accelerator, &bytes)
        .map_err(|e| EngineError::Model(format!("could not load model {source}: {e}")))?;
    let lanes = options.lane_count();
    // Further lanes are built from the same bytes, kept only when there may be some.
    let kept = (lanes > 1).then_some(bytes);
    let threads = if adaptive { 1 } else { options.threads };
    let environment = environment.clone();
    let open_lane = Box::new(move || -> Result<Session, String> {
        let bytes = kept.as_ref().ok_or("one lane only")?;
        session_from(&environment, threads, accelerator, bytes)
    });
    Ok(SharedSession::new(first, lanes, adaptive, open_lane))
}

/// One ONNX Runtime session of a model. Spinning worker threads would steal the CPU the video
/// pipeline needs between inferences.
fn session_from(
    environment: &Environment,
    threads: usize,
    accelerator: Accelerator,
    bytes: &[u8],
) -> Result<Session, String> {
    Session::builder(environment)
        .and_then(|b| match accelerator.provider() {
            Some(provider) => Ok(b.with_execution_providers([provider])?),
            None => Ok(b),
        })
        .and_then(|b| Ok(b.with_intra_threads(threads)?))
        .and_then(|b| Ok(b.with_intra_op_spinning(false)?))
        .and_then(|b| Ok(b.with_inter_op_spinning(false)?))
        .and_then(|mut b| b.commit_from_memory(bytes))
        .map_err(|e| e.to_string())
}

/// Works out a session's input layout and output decoder, or explains why the model cannot be used.
fn describe(
    signature: &Signature,
    source: &ModelSource,
    options: &ModelOptions,
) -> Result<(InputSpec, Decoder), EngineError> {
    let [(input_name, input_dtype)] = signature.inputs.as_slice() else {
        return Err(EngineError::Model(format!(
            "model {source} has {} inputs; only models with one image input are supported",
            signature.inputs.len()
        )));
    };
    let (input_type, input_shape) = match input_dtype {
        ValueType::Tensor { ty, shape, .. } => (element_type(ty), shape.to_vec()),
        other => {
            return Err(EngineError::Model(format!(
                "model {source}: input `{input_name}` is not a tensor ({other:?})"
            )));
        }
    };
    let input = InputSpec::from_model(input_name, input_type, &input_shape, &options.input)
        .map_err(|e| EngineError::Model(format!("model {source}: {e}")))?;
    let decoder = Decoder::for_outputs(&signature.outputs, (input.width, input.height), options.decoder)
        .map_err(|e| EngineError::Model(format!("model {source}: {e}")))?;

    Ok((input, decoder))
}

/// Every output as f32, borrowing float outputs and converting integer ones (some exporters give
/// class ids or counts as int64).
fn outputs_as_f32<'a>(outputs: &'a SessionOutputs<'_>) -> Result<Vec<CowArray<'a, f32, IxDyn>>, EngineError> {
    (0..outputs.len())
        .map(|index| {
            let value = &outputs[index];
            let name = index;
            if let Ok(view) = value.try_extract_array::<f32>() {
                return Ok(CowArray::from(view));
            }
            let converted: Option<ArrayD<f32>> = value
                .try_extract_array::<i64>()
                .map(|a| a.mapv(|v| v as f32))
                .or_else(|_| value.try_extract_array::<i32>().map(|a| a.mapv(|v| v as f32)))
                .or_else(|_| value.try_extract_array::<u8>().map(|a| a.mapv(f32::from)))
                .ok();
            converted
                .map(CowArray::from)
                .ok_or_else(|| EngineError::Inference(format!("output {name} is not a numeric tensor")))
        })
        .collect()
}
