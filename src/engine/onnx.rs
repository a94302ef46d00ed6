//! Models run by ONNX Runtime in this process: each lane of a shared instance is one session of the
//! model (ONNX Runtime's Rust API runs a session for one caller at a time).

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::{ArrayD, CowArray, IxDyn};
use ort::environment::Environment;
use ort::session::{RunOptions, Session, SessionOutputs};
use ort::value::{PrimitiveTensorElementType, TensorElementType, TensorRef, ValueType};

use super::queue::{
    Frames, LaneError, Lanes, MAX_BATCH, SharedSession, StopSwitch, split_outputs, switch_of,
};
use super::runtime::{Accelerator, available_accelerators, loaded_library};
use super::{DEFAULT_MODEL, EngineError, InputInfo, InputKind, ModelOptions, ModelSource, Signature};
use crate::decode::OutputInfo;
use crate::lock;
use crate::preprocess::ElementType;

/// The lanes of a model run in this process.
struct SessionLanes {
    lanes: Vec<OnceLock<Mutex<Session>>>,
    /// The model, to build further lanes from (`None`: one lane only).
    bytes: Option<Arc<Cow<'static, [u8]>>>,
    environment: Environment,
    threads: usize,
    accelerator: Accelerator,
}

impl StopSwitch for RunOptions {
    fn stop(&self) {
        // Failing to set the flag only means the run ends in its own time.
        let _ = self.terminate();
    }
}

impl Lanes for SessionLanes {
    fn open(&self, lane: usize) -> Result<(), String> {
        let slot = self.lanes.get(lane).ok_or_else(|| format!("no lane {lane}"))?;
        if slot.get().is_none() {
            let bytes = self.bytes.as_ref().ok_or("one lane only")?;
            let session = session_from(&self.environment, self.threads, self.accelerator, bytes)?;
            let _ = slot.set(Mutex::new(session));
        }
        Ok(())
    }

    fn new_run(&self) -> Result<Arc<dyn StopSwitch>, String> {
        // Fatal errors only in ONNX Runtime's own log: an interrupted run is not an error to
        // print, and a failed one reaches the element as an error anyway.
        let mut options = RunOptions::new().map_err(|e| format!("could not prepare a run: {e}"))?;
        options
            .set_log_level(ort::logging::LogLevel::Fatal)
            .map_err(|e| format!("could not prepare a run: {e}"))?;
        Ok(Arc::new(options))
    }

    fn run(
        &self,
        lane: usize,
        shape: [usize; 4],
        frames: Frames<'_>,
        stop: &Arc<dyn StopSwitch>,
    ) -> Result<Vec<Vec<ArrayD<f32>>>, LaneError> {
        let options = switch_of::<RunOptions>(stop)?;
        let session = self
            .lanes
            .get(lane)
            .and_then(OnceLock::get)
            .ok_or_else(|| format!("lane {lane} is not open"))?;
        let mut session = lock(session);
        let outputs = match frames {
            Frames::U8(parts) => run_joined(&mut session, shape, &parts, options),
            Frames::F32(parts) => run_joined(&mut session, shape, &parts, options),
        };
        Ok(outputs?)
    }
}

/// A session's inputs and outputs as it declares them.
fn signature_of(session: &Session) -> Signature {
    Signature {
        inputs: session
            .inputs()
            .iter()
            .map(|input| InputInfo {
                name: input.name().to_string(),
                kind: match input.dtype() {
                    ValueType::Tensor { ty, .. } => InputKind::Tensor(element_type(ty)),
                    other => InputKind::NotTensor(format!("{other:?}")),
                },
                shape: input
                    .dtype()
                    .tensor_shape()
                    .map(|s| s.to_vec())
                    .unwrap_or_default(),
            })
            .collect(),
        outputs: session
            .outputs()
            .iter()
            .map(|o| OutputInfo {
                name: o.name().to_string(),
                shape: o.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default(),
            })
            .collect(),
    }
}

fn element_type(ty: &TensorElementType) -> Option<ElementType> {
    match ty {
        TensorElementType::Uint8 => Some(ElementType::U8),
        TensorElementType::Float32 => Some(ElementType::F32),
        _ => None,
    }
}

/// Builds a model's first session, and how to open more lanes of it.
pub(super) fn build_session(
    source: &ModelSource,
    options: &ModelOptions,
    environment: &Environment,
) -> Result<SharedSession, EngineError> {
    let bytes: Arc<Cow<'static, [u8]>> = Arc::new(match source {
        ModelSource::BuiltIn => Cow::Borrowed(DEFAULT_MODEL),
        ModelSource::Server(model) => {
            return Err(EngineError::Model(format!("{model} is not an ONNX file")));
        }
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
    let max_lanes = options.lane_count();
    // A batch dimension that is not fixed (-1) takes several frames.
    let batchable = first.inputs().first().is_some_and(|input| {
        input
            .dtype()
            .tensor_shape()
            .is_some_and(|shape| shape.first().is_some_and(|&d| d < 0))
    });
    let signature = signature_of(&first);
    let lanes: Vec<OnceLock<Mutex<Session>>> = (0..max_lanes.max(1)).map(|_| OnceLock::new()).collect();
    let _ = lanes[0].set(Mutex::new(first));
    let lanes = SessionLanes {
        lanes,
        // Further lanes are built from the same bytes, kept only when there may be some.
        bytes: (max_lanes > 1).then_some(bytes),
        environment: environment.clone(),
        threads: if adaptive { 1 } else { options.threads },
        accelerator,
    };
    Ok(SharedSession::new(
        signature,
        Box::new(lanes),
        max_lanes,
        if batchable { MAX_BATCH } else { 1 },
        adaptive,
    ))
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
    let arrays = outputs_as_f32(&outputs).map_err(|e| e.to_string())?;
    split_outputs(arrays, parts.len())
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
