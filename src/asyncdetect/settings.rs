//! `asyncdetect`'s settings: the property values as plain data, with what follows from them for
//! the worker (the model to load, how each frame is treated) and for rate control.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::handoff::Tracking;
use super::mailbox::WorkerConfig;
use super::{
    AsyncDetectChannelOrder, AsyncDetectDecoder, AsyncDetectExecutionProvider, AsyncDetectInputResize,
    AsyncDetectMode, AsyncDetectTracking,
};
use crate::decode::DecoderChoice;
use crate::detection::DetectionFilter;
use crate::engine::remote::Secret;
use crate::engine::{
    Accelerator, DEFAULT_LABELS, ModelOptions, ModelSource, ServedModel, ServerOptions, ServerUrl,
};
use crate::files;
use crate::geometry::{Fit, Region};
use crate::labels::Labels;
use crate::preprocess::{ChannelOrder, InputOverrides, parse_channel_values};

pub const DEFAULT_THRESHOLD: f64 = 0.5;
pub const DEFAULT_MAX_DETECTIONS: u32 = 100;
pub const DEFAULT_THREADS: u32 = 0;
pub const DEFAULT_MODE: AsyncDetectMode = AsyncDetectMode::Async;
pub const DEFAULT_MAX_AGE: u64 = 0;
pub const DEFAULT_POST_MESSAGES: bool = true;
pub const DEFAULT_INFERENCE_NICE: i32 = 19;
pub const DEFAULT_TRACKING: AsyncDetectTracking = AsyncDetectTracking::None;
pub const DEFAULT_TRACK_LOST_TIME: u64 = 1_000_000_000;
pub const DEFAULT_NMS_IOU: f64 = crate::decode::DEFAULT_NMS_IOU as f64;
pub const DEFAULT_INTERVAL: u32 = 1;
pub const DEFAULT_MAX_FPS: f64 = 0.0;
pub const DEFAULT_MOTION_GATING: bool = false;
pub const DEFAULT_MOTION_THRESHOLD: f64 = 0.003;
pub const DEFAULT_SESSION_LANES: u32 = 0;
pub const DEFAULT_SERVER_TIMEOUT_MS: u32 = 5000;
/// Frame times within this of the `max-fps` period count as on time (timestamps are rounded).
const RATE_TOLERANCE: Duration = Duration::from_millis(2);

#[derive(Debug, Clone)]
pub struct Settings {
    pub model_location: Option<String>,
    pub labels_location: Option<String>,
    pub onnxruntime_library: Option<String>,
    pub filter: Arc<DetectionFilter>,
    pub labels_filter: String,
    pub class_thresholds: String,
    pub threads: u32,
    pub mode: AsyncDetectMode,
    pub max_age: u64,
    pub channel_order: AsyncDetectChannelOrder,
    pub input_width: u32,
    pub input_height: u32,
    pub input_mean: Option<String>,
    pub input_std: Option<String>,
    pub post_messages: bool,
    pub inference_nice: i32,
    pub tracking: AsyncDetectTracking,
    pub track_lost_time: u64,
    pub decoder: AsyncDetectDecoder,
    pub execution_provider: AsyncDetectExecutionProvider,
    pub input_resize: AsyncDetectInputResize,
    pub nms_iou: f64,
    pub roi: String,
    pub region: Option<Arc<Region>>,
    pub interval: u32,
    pub max_fps: f64,
    pub motion_gating: bool,
    pub motion_threshold: f64,
    pub model_instance_id: Option<String>,
    pub session_lanes: u32,
    /// Remote inference: the server's address, the model's name and version there, and how to
    /// reach it.
    pub inference_server: Option<String>,
    pub server_model: Option<String>,
    pub server_model_version: Option<String>,
    pub server_token: Option<String>,
    pub server_headers: Option<String>,
    pub server_ca_file: Option<String>,
    pub server_timeout_ms: u32,
    /// DL Streamer's `device` and `batch-size`, as accepted (see `aliases.rs`).
    pub device: String,
    pub batch_size: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model_location: None,
            labels_location: None,
            onnxruntime_library: None,
            filter: Arc::new(DetectionFilter {
                threshold: DEFAULT_THRESHOLD as f32,
                max_detections: DEFAULT_MAX_DETECTIONS as usize,
                ..Default::default()
            }),
            labels_filter: String::new(),
            class_thresholds: String::new(),
            threads: DEFAULT_THREADS,
            mode: DEFAULT_MODE,
            max_age: DEFAULT_MAX_AGE,
            channel_order: AsyncDetectChannelOrder::Auto,
            input_width: 0,
            input_height: 0,
            input_mean: None,
            input_std: None,
            post_messages: DEFAULT_POST_MESSAGES,
            inference_nice: DEFAULT_INFERENCE_NICE,
            tracking: DEFAULT_TRACKING,
            track_lost_time: DEFAULT_TRACK_LOST_TIME,
            decoder: AsyncDetectDecoder::Auto,
            execution_provider: AsyncDetectExecutionProvider::Cpu,
            input_resize: AsyncDetectInputResize::Auto,
            nms_iou: DEFAULT_NMS_IOU,
            roi: String::new(),
            region: None,
            interval: DEFAULT_INTERVAL,
            max_fps: DEFAULT_MAX_FPS,
            motion_gating: DEFAULT_MOTION_GATING,
            motion_threshold: DEFAULT_MOTION_THRESHOLD,
            model_instance_id: None,
            session_lanes: DEFAULT_SESSION_LANES,
            inference_server: None,
            server_model: None,
            server_model_version: None,
            server_token: None,
            server_headers: None,
            server_ca_file: None,
            server_timeout_ms: DEFAULT_SERVER_TIMEOUT_MS,
            device: "CPU".into(),
            batch_size: 1,
        }
    }
}

impl Settings {
    /// Whether a frame may go to the model under `interval` and `max-fps`, given the last frame
    /// that went (its sequence number and timestamp).
    pub fn rate_allows(
        &self,
        seq: u64,
        pts: Option<gst::ClockTime>,
        last_taken: Option<(u64, Option<gst::ClockTime>)>,
    ) -> bool {
        let Some((last_seq, last_pts)) = last_taken else {
            return true;
        };
        if seq.saturating_sub(last_seq) < self.interval.max(1) as u64 {
            return false;
        }
        if self.max_fps > 0.0
            && let (Some(now), Some(then)) = (pts, last_pts)
        {
            let period = Duration::from_secs_f64(1.0 / self.max_fps);
            let elapsed = Duration::from_nanos(now.nseconds().saturating_sub(then.nseconds()));
            // A backwards jump (a new segment) lets the frame go.
            return now < then || elapsed + RATE_TOLERANCE >= period;
        }
        true
    }
}

/// Which GStreamer error a configuration problem becomes.
#[derive(Debug, Clone, Copy)]
pub enum ConfigKind {
    NotFound,
    OpenRead,
    Read,
    Settings,
    Failed,
}

/// Why the settings cannot be used: an error when starting, a warning on a hot reload.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub kind: ConfigKind,
    pub message: String,
}

impl ConfigError {
    pub fn new(kind: ConfigKind, message: String) -> Self {
        ConfigError { kind, message }
    }

    pub fn to_error_message(&self) -> gst::ErrorMessage {
        let message = &self.message;
        match self.kind {
            ConfigKind::NotFound => gst::error_msg!(gst::ResourceError::NotFound, ["{}", message]),
            ConfigKind::OpenRead => gst::error_msg!(gst::ResourceError::OpenRead, ["{}", message]),
            ConfigKind::Read => gst::error_msg!(gst::ResourceError::Read, ["{}", message]),
            ConfigKind::Settings => gst::error_msg!(gst::LibraryError::Settings, ["{}", message]),
            ConfigKind::Failed => gst::error_msg!(gst::LibraryError::Failed, ["{}", message]),
        }
    }
}

impl Settings {
    /// How results follow objects, as the worker sees it.
    pub fn job_tracking(&self) -> Tracking {
        match self.tracking {
            AsyncDetectTracking::None => Tracking::None,
            AsyncDetectTracking::Iou => Tracking::Ids,
            AsyncDetectTracking::Predict => Tracking::Predict,
            // In sync mode the streaming thread tracks, from the detections as they are.
            AsyncDetectTracking::Visual if self.mode == AsyncDetectMode::Sync => Tracking::None,
            AsyncDetectTracking::Visual => Tracking::Visual,
        }
    }

    /// How frames are fitted into the model input; `None`: what the model family expects.
    pub fn fit(&self) -> Option<Fit> {
        match self.input_resize {
            AsyncDetectInputResize::Auto => None,
            AsyncDetectInputResize::Stretch => Some(Fit::Stretch),
            AsyncDetectInputResize::Letterbox => Some(Fit::Letterbox),
        }
    }

    /// The motion-gating threshold, when gating.
    pub fn motion_threshold(&self) -> Option<f32> {
        self.motion_gating.then_some(self.motion_threshold as f32)
    }
}

fn load_labels(settings: &Settings) -> Result<Labels, ConfigError> {
    match (&settings.labels_location, &settings.model_location) {
        // A served model's classes are named by a labels file, or by their ids.
        (None, _) if settings.inference_server.is_some() => Ok(Labels::default()),
        (Some(path), _) => {
            let text = files::read_regular_file(path.as_ref(), "labels file", files::MAX_LABELS_BYTES)
                .map_err(|e| ConfigError::new(ConfigKind::OpenRead, e))?;
            let text = String::from_utf8(text).map_err(|_| {
                ConfigError::new(
                    ConfigKind::Read,
                    format!("Labels file {} is not UTF-8 text", path),
                )
            })?;
            Labels::parse(&text).map_err(|e| {
                ConfigError::new(ConfigKind::Read, format!("Labels file {} is broken: {}", path, e))
            })
        }
        // The built-in model's names; another model without a labels file is labelled by id.
        (None, None) => Labels::parse(DEFAULT_LABELS)
            .map_err(|e| ConfigError::new(ConfigKind::Failed, format!("Built-in labels are broken: {}", e))),
        (None, Some(_)) => Ok(Labels::default()),
    }
}

/// What the worker loads for these settings. Cheap checks only (files exist, are regular and
/// start like ONNX); the model itself is parsed on the inference thread.
pub fn model_config(settings: &Settings) -> Result<WorkerConfig, ConfigError> {
    let labels = load_labels(settings)?;
    let source = match (&settings.inference_server, &settings.model_location) {
        (Some(server), location) => served_model(settings, server, location.as_deref())?,
        (None, None) => ModelSource::BuiltIn,
        (None, Some(path)) => {
            // Cheap checks here so a typo fails the state change at once; parsing the model
            // happens on the inference thread. Nothing is opened before the file is known to
            // be a regular file (a FIFO would block), and only its first bytes are read.
            let path_buf = PathBuf::from(path);
            let kind = if path_buf.exists() {
                ConfigKind::OpenRead
            } else {
                ConfigKind::NotFound
            };
            files::check_regular_file(&path_buf, "model", files::MAX_MODEL_BYTES)
                .and_then(|_| files::head(&path_buf, "model"))
                .map_err(|e| ConfigError::new(kind, e))
                .and_then(|head| match files::not_onnx(&head) {
                    Some(problem) => Err(ConfigError::new(
                        ConfigKind::Read,
                        format!("Model {path} {problem}"),
                    )),
                    None => Ok(()),
                })?;
            ModelSource::File(path_buf)
        }
    };
    let parse = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(parse_channel_values)
            .transpose()
            .map_err(|e| ConfigError::new(ConfigKind::Settings, format!("Invalid {}: {}", name, e)))
    };
    let input = InputOverrides {
        channel_order: match settings.channel_order {
            AsyncDetectChannelOrder::Rgb => Some(ChannelOrder::Rgb),
            AsyncDetectChannelOrder::Bgr => Some(ChannelOrder::Bgr),
            AsyncDetectChannelOrder::Auto => None,
        },
        width: settings.input_width,
        height: settings.input_height,
        mean: parse("input-mean", &settings.input_mean)?,
        std: parse("input-std", &settings.input_std)?,
    };
    let server = ServerOptions {
        token: Secret(settings.server_token.clone().unwrap_or_default()),
        headers: parse_headers(settings.server_headers.as_deref().unwrap_or_default())
            .map_err(|e| ConfigError::new(ConfigKind::Settings, format!("Invalid server-headers: {e}")))?,
        ca_file: settings.server_ca_file.as_ref().map(PathBuf::from),
        timeout: Duration::from_millis(settings.server_timeout_ms.max(1) as u64),
    };
    server
        .validate()
        .map_err(|e| ConfigError::new(ConfigKind::Settings, format!("Inference server settings: {e}")))?;
    Ok(WorkerConfig {
        labels_origin: match (&settings.labels_location, &settings.model_location) {
            (Some(path), _) => Some(format!("Labels file {path}")),
            (None, _) if settings.inference_server.is_some() => None,
            (None, None) => Some("The built-in COCO labels file".to_string()),
            (None, Some(_)) => None,
        },
        // In sync mode the video waits for the model anyway: yielding to it would only slow both.
        nice: match settings.mode {
            AsyncDetectMode::Async => settings.inference_nice,
            AsyncDetectMode::Sync => 0,
        },
        source,
        labels,
        options: ModelOptions {
            threads: settings.threads as usize,
            instance_id: settings.model_instance_id.clone(),
            lanes: settings.session_lanes as usize,
            input,
            library: settings.onnxruntime_library.as_ref().map(PathBuf::from),
            decoder: match settings.decoder {
                AsyncDetectDecoder::Auto => DecoderChoice::Auto,
                AsyncDetectDecoder::Ssd => DecoderChoice::Ssd,
                AsyncDetectDecoder::Yolo => DecoderChoice::Yolo,
                AsyncDetectDecoder::BlazeFace => DecoderChoice::BlazeFace,
                AsyncDetectDecoder::NanoDet => DecoderChoice::NanoDet,
            },
            accelerator: match settings.execution_provider {
                AsyncDetectExecutionProvider::Cpu => Accelerator::Cpu,
                AsyncDetectExecutionProvider::OpenVino => Accelerator::OpenVino,
                AsyncDetectExecutionProvider::Cuda => Accelerator::Cuda,
                AsyncDetectExecutionProvider::TensorRt => Accelerator::TensorRt,
            },
            server,
        },
    })
}

/// `inference-server` and `server-model` as the model to run, or why they cannot be.
fn served_model(
    settings: &Settings,
    server: &str,
    location: Option<&str>,
) -> Result<ModelSource, ConfigError> {
    let invalid = |message: String| ConfigError::new(ConfigKind::Settings, message);
    let server = ServerUrl::parse(server).map_err(|e| invalid(format!("Invalid inference-server: {e}")))?;
    if let Some(location) = location {
        return Err(invalid(format!(
            "Both model-location ({location}) and inference-server ({server}) are set: the model runs \
             either here or on the server"
        )));
    }
    let name = settings
        .server_model
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "inference-server is {server} but server-model names no model"
            ))
        })?;
    Ok(ModelSource::Server(ServedModel {
        server,
        name: name.to_string(),
        version: settings.server_model_version.clone().unwrap_or_default(),
    }))
}

/// `server-headers`: `name=value` pairs separated by commas.
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("\"{pair}\" is not name=value"))?;
            Ok((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect()
}
