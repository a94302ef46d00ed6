//! The ONNX Runtime side: loading the runtime library once per process, building a session for a
//! model and running it on a pre-processed image. No GStreamer types.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use once_cell::sync::Lazy;
use ort::environment::Environment;
use ort::session::{Session, SessionOutputs};
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::decode::{Decoder, DecoderChoice, OutputInfo, RawDetection};
use crate::detection::Detection;
use crate::labels::Labels;
use crate::lock;
use crate::preprocess::{ElementType, InputOverrides, InputSpec};

/// The built-in model: SSD MobileNet v2 COCO (see `models/README.md`).
pub static DEFAULT_MODEL: &[u8] = include_bytes!("../models/ssd_mobilenet_v2_coco_quant.onnx");
/// Its class names.
pub static DEFAULT_LABELS: &str = include_str!("../models/coco_labels.txt");

/// The library names tried when neither the caller nor `ORT_DYLIB_PATH` names one: the dynamic
/// loader's search path then finds what `scripts/setup.sh` installed.
const DEFAULT_LIBRARY_NAMES: [&str; 2] = ["libonnxruntime.so", "libonnxruntime.so.1"];

#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// The ONNX Runtime shared library could not be loaded or initialised.
    Runtime(String),
    /// The model could not be read or parsed, or its inputs/outputs cannot be used.
    Model(String),
    /// Running the model failed.
    Inference(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Runtime(m) | EngineError::Model(m) | EngineError::Inference(m) => f.write_str(m),
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
        _ => DEFAULT_LIBRARY_NAMES.iter().map(PathBuf::from).collect(),
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
        match ort::init_from(candidate) {
            Ok(builder) => {
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

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelOptions {
    /// Intra-op threads; 0 lets ONNX Runtime choose.
    pub threads: usize,
    pub input: InputOverrides,
    pub library: Option<PathBuf>,
    pub decoder: DecoderChoice,
}

/// What makes two loads the same session: the model's bytes (the built-in model, or a file as it
/// is now) and the session settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    source: SourceKey,
    threads: usize,
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

type SharedSession = Arc<Mutex<Session>>;

/// Sessions in use, so elements running the same model share one copy of its weights and one
/// thread pool. Held weakly: a session goes when its last model does.
static SESSIONS: Lazy<Mutex<HashMap<SessionKey, Weak<Mutex<Session>>>>> = Lazy::new(Mutex::default);

/// Counts the models (elements) using one session.
#[derive(Debug, Clone, Default)]
pub struct SessionUsers(Weak<Mutex<Session>>);

impl SessionUsers {
    /// Models currently sharing the session (0 once it is gone).
    pub fn count(&self) -> usize {
        self.0.strong_count()
    }
}

/// A loaded model, ready to run. Owned by one thread at a time; its session may be shared.
pub struct Model {
    session: SharedSession,
    input: InputSpec,
    decoder: Decoder,
    labels: Labels,
    u8_input: Vec<u8>,
    f32_input: Vec<f32>,
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
    pub fn load(source: &ModelSource, labels: Labels, options: &ModelOptions) -> Result<Model, EngineError> {
        let environment = environment(options.library.as_deref())?;
        let model_error =
            |what: &str, e: ort::Error| EngineError::Model(format!("{what} model {source}: {e}"));
        // Spinning worker threads would steal the CPU the video pipeline needs between inferences.
        let configure = || -> Result<ort::session::builder::SessionBuilder, String> {
            Session::builder(&environment)
                .map_err(|e| e.to_string())?
                .with_intra_threads(options.threads)
                .map_err(|e| e.to_string())?
                .with_intra_op_spinning(false)
                .map_err(|e| e.to_string())?
                .with_inter_op_spinning(false)
                .map_err(|e| e.to_string())
        };
        let key = SessionKey {
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
        };
        // Only model-loading threads take this lock, never a streaming thread; holding it while
        // building keeps two elements from building the same session twice.
        let mut sessions = lock(&SESSIONS);
        sessions.retain(|_, session| session.strong_count() > 0);
        let shared = match sessions.get(&key).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let mut builder = configure().map_err(|e| {
                    EngineError::Model(format!("could not configure a session for model {source}: {e}"))
                })?;
                let session = match source {
                    ModelSource::BuiltIn => builder.commit_from_memory(DEFAULT_MODEL),
                    ModelSource::File(path) => {
                        let bytes = std::fs::read(path).map_err(|e| {
                            EngineError::Model(format!("could not read model {}: {e}", path.display()))
                        })?;
                        if bytes.is_empty() {
                            return Err(EngineError::Model(format!(
                                "model {} is an empty file",
                                path.display()
                            )));
                        }
                        builder.commit_from_memory(&bytes)
                    }
                }
                .map_err(|e| model_error("could not load", e))?;
                Arc::new(Mutex::new(session))
            }
        };
        let (mut input, decoder) = {
            let session = lock(&shared);
            describe(&session, source, options)?
        };
        // A float input left at the defaults gets what the model family is trained with.
        if let (Some((mean, std)), ElementType::F32, None, None) = (
            decoder.preferred_normalisation(),
            input.element_type,
            options.input.mean,
            options.input.std,
        ) {
            input.mean = mean;
            input.std = std;
        }
        sessions.insert(key, Arc::downgrade(&shared));
        drop(sessions);

        let mut model = Model {
            session: shared,
            input,
            decoder,
            labels,
            u8_input: Vec::new(),
            f32_input: Vec::new(),
        };
        let blank = vec![0u8; model.input.tensor_len()];
        model
            .run_raw(&blank, model.input.width * 3)
            .map_err(|e| EngineError::Model(format!("model {source} failed its first run: {e}")))?;
        Ok(model)
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

    /// Like [`detect`](Self::detect), also returning how long ONNX Runtime took.
    pub fn detect_timed(
        &mut self,
        image: &[u8],
        stride: usize,
    ) -> Result<(Vec<Detection>, Duration), EngineError> {
        let start = Instant::now();
        let detections = self.detect(image, stride)?;
        Ok((detections, start.elapsed()))
    }

    fn run_raw(&mut self, image: &[u8], stride: usize) -> Result<Vec<RawDetection>, EngineError> {
        let shape = self.input.tensor_shape();
        let inference_error = |e: ort::Error| EngineError::Inference(e.to_string());
        let fill_error = |e: crate::preprocess::InputError| EngineError::Inference(e.to_string());
        match self.input.element_type {
            ElementType::U8 => self
                .input
                .fill_u8(image, stride, &mut self.u8_input)
                .map_err(fill_error)?,
            ElementType::F32 => self
                .input
                .fill_f32(image, stride, &mut self.f32_input)
                .map_err(fill_error)?,
        }
        // A shared session runs one frame at a time; the lock is held only by inference threads.
        let mut session = lock(&self.session);
        let outputs = match self.input.element_type {
            ElementType::U8 => {
                let tensor =
                    TensorRef::from_array_view((shape, self.u8_input.as_slice())).map_err(inference_error)?;
                session.run(ort::inputs![tensor]).map_err(inference_error)?
            }
            ElementType::F32 => {
                let tensor = TensorRef::from_array_view((shape, self.f32_input.as_slice()))
                    .map_err(inference_error)?;
                session.run(ort::inputs![tensor]).map_err(inference_error)?
            }
        };
        let arrays = outputs_as_f32(&outputs)?;
        let views: Vec<ArrayViewD<'_, f32>> = arrays.iter().map(|a| a.view()).collect();
        self.decoder
            .decode(&views)
            .map_err(|e| EngineError::Inference(format!("decoding the outputs failed: {e}")))
    }
}

/// Works out a session's input layout and output decoder, or explains why the model cannot be used.
fn describe(
    session: &Session,
    source: &ModelSource,
    options: &ModelOptions,
) -> Result<(InputSpec, Decoder), EngineError> {
    let [input] = session.inputs() else {
        return Err(EngineError::Model(format!(
            "model {source} has {} inputs; only models with one image input are supported",
            session.inputs().len()
        )));
    };
    let (input_type, input_shape) = match input.dtype() {
        ValueType::Tensor { ty, shape, .. } => (element_type(ty), shape.to_vec()),
        other => {
            return Err(EngineError::Model(format!(
                "model {source}: input `{}` is not a tensor ({other:?})",
                input.name()
            )));
        }
    };
    let input = InputSpec::from_model(input.name(), input_type, &input_shape, &options.input)
        .map_err(|e| EngineError::Model(format!("model {source}: {e}")))?;
    let outputs: Vec<OutputInfo> = session
        .outputs()
        .iter()
        .map(|o| OutputInfo {
            name: o.name().to_string(),
            shape: o.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default(),
        })
        .collect();
    let decoder = Decoder::for_outputs(&outputs, (input.width, input.height), options.decoder)
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
