//! ONNX Runtime itself: loading the shared library once per process and the execution providers
//! (accelerators) the loaded build has.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use once_cell::sync::Lazy;
use ort::environment::Environment;

use super::EngineError;
use crate::lock;

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
    pub(super) fn available(self) -> bool {
        use ort::ep::ExecutionProvider;
        match self {
            Accelerator::Cpu => true,
            Accelerator::OpenVino => ort::ep::OpenVINO::is_available().unwrap_or(false),
            Accelerator::Cuda => ort::ep::CUDA::is_available().unwrap_or(false),
            Accelerator::TensorRt => ort::ep::TensorRT::is_available().unwrap_or(false),
        }
    }

    /// The execution provider to register, failing the session when it cannot be.
    pub(super) fn provider(self) -> Option<ort::ep::ExecutionProviderDispatch> {
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
