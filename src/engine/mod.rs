//! Running a detection model on a pre-processed image: in this process with ONNX Runtime
//! (`onnx.rs`, `runtime.rs`) or on an inference server over KServe v2 gRPC (`remote/`), behind one
//! queue per shared model instance (`queue.rs`). No GStreamer types.

mod onnx;
mod queue;
pub mod remote;
mod runtime;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ndarray::ArrayViewD;
use once_cell::sync::Lazy;

pub use queue::{MAX_BATCH, RunCanceller};
use queue::{RunError, SharedSession, TensorData};
pub use remote::{ServedModel, ServerOptions, ServerUrl};
pub use runtime::{Accelerator, available_accelerators, environment, loaded_library};

use crate::decode::{Decoder, DecoderChoice, OutputInfo, RawDetection};
use crate::detection::Detection;
use crate::labels::Labels;
use crate::lock;
use crate::preprocess::{ElementType, InputOverrides, InputSpec};

/// The built-in model: SSD MobileNet v2 COCO (see `models/README.md`).
pub static DEFAULT_MODEL: &[u8] = include_bytes!("../../models/ssd_mobilenet_v2_coco_quant.onnx");
/// Its class names.
pub static DEFAULT_LABELS: &str = include_str!("../../models/coco_labels.txt");

#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// The ONNX Runtime shared library could not be loaded or initialised.
    Runtime(String),
    /// The model could not be read or parsed, or its inputs/outputs cannot be used.
    Model(String),
    /// Running the model failed.
    Inference(String),
    /// The inference server could not be reached or did not answer in time, or does not serve
    /// the model (yet): worth trying again later.
    Unavailable(String),
    /// The run was interrupted by [`RunCanceller::cancel`] (stop, flush, another model).
    Cancelled,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Runtime(m)
            | EngineError::Model(m)
            | EngineError::Inference(m)
            | EngineError::Unavailable(m) => f.write_str(m),
            EngineError::Cancelled => f.write_str("the run was interrupted"),
        }
    }
}

impl std::error::Error for EngineError {}

/// Where the model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// The SSD MobileNet v2 COCO model built into the plugin.
    BuiltIn,
    File(PathBuf),
    /// A model served by an inference server.
    Server(ServedModel),
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::BuiltIn => f.write_str("built-in SSD MobileNet v2 COCO"),
            ModelSource::File(path) => write!(f, "{}", path.display()),
            ModelSource::Server(model) => write!(f, "{model}"),
        }
    }
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
    /// How to reach an inference server, for a [`ModelSource::Server`] model.
    pub server: ServerOptions,
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
    Server {
        model: ServedModel,
        server: ServerOptions,
    },
    BuiltIn,
    File {
        path: PathBuf,
        len: u64,
        modified: Option<std::time::SystemTime>,
    },
}

/// A model's inputs and outputs (names, types, shapes) as its session or server declares them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Signature {
    pub inputs: Vec<InputInfo>,
    pub outputs: Vec<OutputInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InputInfo {
    pub name: String,
    pub kind: InputKind,
    /// -1 where a dimension is not fixed.
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InputKind {
    /// A tensor: of an element type the pre-processing fills, or of another (`None`).
    Tensor(Option<ElementType>),
    /// Something else, described.
    NotTensor(String),
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
        let key = match &options.instance_id {
            Some(id) => SessionKey::Instance(id.clone()),
            None => SessionKey::Model {
                source: match source {
                    ModelSource::BuiltIn => SourceKey::BuiltIn,
                    ModelSource::Server(model) => SourceKey::Server {
                        model: model.clone(),
                        server: options.server.clone(),
                    },
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
        let shared = match source {
            // Reaching a server is interruptible by itself, and needs no ONNX Runtime.
            ModelSource::Server(model) => shared_session(key, || remote::connect(model, options, abandon))?,
            _ => {
                let environment = environment(options.library.as_deref())?;
                let (owned_source, owned_options) = (source.clone(), options.clone());
                crate::abandonable::run(
                    "asyncdetect-load",
                    move || {
                        shared_session(key, || {
                            onnx::build_session(&owned_source, &owned_options, &environment)
                        })
                    },
                    abandon,
                )
                .map_err(|why| match why {
                    crate::abandonable::Abandoned::ByCaller => EngineError::Cancelled,
                    crate::abandonable::Abandoned::Failed(e) => {
                        EngineError::Model(format!("loading model {source} failed: {e}"))
                    }
                })??
            }
        };
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
                        EngineError::Unavailable(e) => EngineError::Unavailable(e),
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
            RunError::Unavailable(e) => EngineError::Unavailable(e),
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

/// Works out a session's input layout and output decoder, or explains why the model cannot be used.
fn describe(
    signature: &Signature,
    source: &ModelSource,
    options: &ModelOptions,
) -> Result<(InputSpec, Decoder), EngineError> {
    let [input] = signature.inputs.as_slice() else {
        return Err(EngineError::Model(format!(
            "model {source} has {} inputs; only models with one image input are supported",
            signature.inputs.len()
        )));
    };
    let input_type = match &input.kind {
        InputKind::Tensor(element_type) => *element_type,
        InputKind::NotTensor(what) => {
            return Err(EngineError::Model(format!(
                "model {source}: input `{}` is not a tensor ({what})",
                input.name
            )));
        }
    };
    let input = InputSpec::from_model(&input.name, input_type, &input.shape, &options.input)
        .map_err(|e| EngineError::Model(format!("model {source}: {e}")))?;
    let decoder = Decoder::for_outputs(&signature.outputs, (input.width, input.height), options.decoder)
        .map_err(|e| EngineError::Model(format!("model {source}: {e}")))?;

    Ok((input, decoder))
}
