//! The `asyncdetect` element: a BaseTransform working in place that never waits for the model in
//! async mode. See `worker.rs` for the inference thread.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use super::worker::{self, Job, Shared, Statistics, WaitOutcome, WorkerConfig};
use super::{
    AsyncDetectChannelOrder, AsyncDetectDecoder, AsyncDetectInputResize, AsyncDetectMode, AsyncDetectTracking,
};
use crate::decode::DecoderChoice;
use crate::detection::DetectionFilter;
use crate::engine::{DEFAULT_LABELS, ModelOptions, ModelSource};
use crate::files;
use crate::geometry::{Fit, Region};
use crate::labels::Labels;
use crate::lock;
use crate::preprocess::{ChannelOrder, InputOverrides, parse_channel_values};

pub static CAT: Lazy<gst::DebugCategory> = Lazy::new(|| {
    gst::DebugCategory::new(
        "asyncdetect",
        gst::DebugColorFlags::empty(),
        Some("Object detection on an inference thread"),
    )
});

const DEFAULT_THRESHOLD: f64 = 0.5;
const DEFAULT_MAX_DETECTIONS: u32 = 100;
const DEFAULT_THREADS: u32 = 0;
const DEFAULT_MODE: AsyncDetectMode = AsyncDetectMode::Async;
const DEFAULT_MAX_AGE: u64 = 0;
const DEFAULT_POST_MESSAGES: bool = true;
const DEFAULT_INFERENCE_NICE: i32 = 19;
const DEFAULT_TRACKING: AsyncDetectTracking = AsyncDetectTracking::None;
const DEFAULT_TRACK_LOST_TIME: u64 = 1_000_000_000;
const DEFAULT_NMS_IOU: f64 = crate::decode::DEFAULT_NMS_IOU as f64;
const DEFAULT_INTERVAL: u32 = 1;
const DEFAULT_MAX_FPS: f64 = 0.0;
const DEFAULT_MOTION_GATING: bool = false;
const DEFAULT_MOTION_THRESHOLD: f64 = 0.003;
const DEFAULT_SESSION_LANES: u32 = 0;
/// Frame times within this of the `max-fps` period count as on time (timestamps are rounded).
const RATE_TOLERANCE: Duration = Duration::from_millis(2);
/// Predicted boxes are moved forward at most this far: past it, a velocity is a guess.
const MAX_PREDICTION: f64 = 1.0;

#[derive(Debug, Clone)]
struct Settings {
    model_location: Option<String>,
    labels_location: Option<String>,
    onnxruntime_library: Option<String>,
    filter: Arc<DetectionFilter>,
    labels_filter: String,
    class_thresholds: String,
    threads: u32,
    mode: AsyncDetectMode,
    max_age: u64,
    channel_order: AsyncDetectChannelOrder,
    input_width: u32,
    input_height: u32,
    input_mean: Option<String>,
    input_std: Option<String>,
    post_messages: bool,
    inference_nice: i32,
    tracking: AsyncDetectTracking,
    track_lost_time: u64,
    decoder: AsyncDetectDecoder,
    input_resize: AsyncDetectInputResize,
    nms_iou: f64,
    roi: String,
    region: Option<Arc<Region>>,
    interval: u32,
    max_fps: f64,
    motion_gating: bool,
    motion_threshold: f64,
    model_instance_id: Option<String>,
    session_lanes: u32,
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
        }
    }
}

impl Settings {
    /// Whether a frame may go to the model under `interval` and `max-fps`, given the last frame
    /// that went (its sequence number and timestamp).
    fn rate_allows(
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
enum ConfigKind {
    NotFound,
    OpenRead,
    Read,
    Settings,
    Failed,
}

/// Why the settings cannot be used: an error when starting, a warning on a hot reload.
#[derive(Debug, Clone)]
struct ConfigError {
    kind: ConfigKind,
    message: String,
}

impl ConfigError {
    fn new(kind: ConfigKind, message: String) -> Self {
        ConfigError { kind, message }
    }

    fn to_error_message(&self) -> gst::ErrorMessage {
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

/// Exists between `start()` and `stop()`.
struct State {
    shared: Arc<Shared>,
    worker: Option<std::thread::JoinHandle<()>>,
    info: Option<gst_video::VideoInfo>,
    seq: u64,
    last_arrival: Option<Instant>,
    /// Smoothed wall-clock time between buffers, to predict when the next one comes.
    arrival_interval: Option<Duration>,
    /// The last frame handed to the worker (sequence number and timestamp), for rate control.
    last_taken: Option<(u64, Option<gst::ClockTime>)>,
}

#[derive(Default)]
pub struct AsyncDetect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Arc<Statistics>,
}

impl AsyncDetect {
    fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    fn update_filter(&self, change: impl FnOnce(&mut DetectionFilter)) {
        let mut settings = lock(&self.settings);
        let mut filter = (*settings.filter).clone();
        change(&mut filter);
        settings.filter = Arc::new(filter);
    }

    fn load_labels(settings: &Settings) -> Result<Labels, ConfigError> {
        match (&settings.labels_location, &settings.model_location) {
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
            (None, None) => Labels::parse(DEFAULT_LABELS).map_err(|e| {
                ConfigError::new(ConfigKind::Failed, format!("Built-in labels are broken: {}", e))
            }),
            (None, Some(_)) => Ok(Labels::default()),
        }
    }

    fn model_config(settings: &Settings) -> Result<WorkerConfig, ConfigError> {
        let labels = Self::load_labels(settings)?;
        let source = match &settings.model_location {
            None => ModelSource::BuiltIn,
            Some(path) => {
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
        Ok(WorkerConfig {
            labels_origin: match (&settings.labels_location, &settings.model_location) {
                (Some(path), _) => Some(format!("Labels file {path}")),
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
            },
        })
    }

    /// Attaches `result` to `buffer` as ROI metas sized for `info`, unless it is older than
    /// `max_age` (0 = any age).
    fn attach(
        buffer: &mut gst::BufferRef,
        info: &gst_video::VideoInfo,
        result: &worker::InferenceResult,
        max_age: u64,
    ) -> usize {
        let age = match (buffer.pts(), result.frame_pts) {
            (Some(now), Some(then)) => Some(now.nseconds() as i64 - then.nseconds() as i64),
            _ => None,
        };
        if max_age > 0 && age.is_some_and(|age| age.unsigned_abs() > max_age) {
            return 0;
        }
        // Ids stay distinct from ROIs other elements already put on this buffer.
        let first_id = buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .map(|m| m.id() + 1)
            .max()
            .unwrap_or(0);
        for (index, detection) in result.detections.iter().enumerate() {
            let track = result.tracks.get(index);
            let ahead = age
                .filter(|&age| result.predict && age > 0)
                .map(|age| (age as f64 / 1e9).min(MAX_PREDICTION));
            let mut shown = detection.clone();
            if let (Some((_, velocity)), Some(seconds)) = (track, ahead) {
                shown.bbox = crate::track::predict(&detection.bbox, velocity, seconds);
            }
            let rect = shown.bbox.to_pixels(info.width(), info.height());
            let mut params = worker::detection_structure(&shown);
            if let Some(then) = result.frame_pts {
                params.set("frame_timestamp", then.nseconds());
            }
            if let Some(age) = age {
                params.set("age", age);
            }
            if track.is_some() && ahead.is_some() {
                params.set("predicted", true);
            }
            let mut meta = gst_video::VideoRegionOfInterestMeta::add(buffer, &detection.label, rect);
            // A tracked object's ROI id is its track id, unless other elements' ROIs are there.
            match track {
                Some((id, _)) if first_id == 0 => meta.set_id(*id as i32),
                _ => meta.set_id(first_id + index as i32),
            }
            meta.add_param(params);
            if let Some((id, _)) = track {
                meta.add_param(
                    gst::Structure::builder("object_id")
                        .field("id", *id as i32)
                        .build(),
                );
            }
        }
        result.detections.len()
    }

    /// Hot reload: while running, hands the worker the model the settings now name. What cannot
    /// even be opened is reported at once and changes nothing.
    fn reload_model(&self) {
        let shared = lock(&self.state).as_ref().map(|s| s.shared.clone());
        let Some(shared) = shared else { return };
        let settings = self.settings();
        match Self::model_config(&settings) {
            Ok(config) => {
                gst::info!(CAT, imp = self, "Switching to model {}", config.source);
                shared.request_reload(config);
            }
            Err(e) => gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                ("Keeping the current model: {}", e.message)
            ),
        }
    }

    fn shut_down_worker(&self) {
        let shared = lock(&self.state).as_ref().map(|s| s.shared.clone());
        if let Some(shared) = shared {
            shared.shut_down();
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AsyncDetect {
    const NAME: &'static str = "GstAsyncDetect";
    type Type = super::AsyncDetect;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for AsyncDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            vec![
                glib::ParamSpecString::builder("model-location")
                    .nick("Model location")
                    .blurb(
                        "Path of an ONNX detection model. Unset: the built-in SSD MobileNet v2 COCO \
                         detector (80 classes). Changing it while playing loads the new model on the \
                         inference thread and swaps it in; if it fails, a warning is posted and the \
                         current model keeps running.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("labels-location")
                    .nick("Labels location")
                    .blurb(
                        "Path of a class-names file: one `<id> <name>` or one bare name per line. \
                         Unset: COCO names for the built-in model, class ids for other models. \
                         Changing it while playing reloads the model with the new names.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("onnxruntime-library")
                    .nick("ONNX Runtime library")
                    .blurb(
                        "Path of libonnxruntime.so. Unset: $ORT_DYLIB_PATH, else the system library \
                         path. Loaded once per process: the first element to start decides.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("threshold")
                    .nick("Threshold")
                    .blurb("Minimum confidence (0 to 1) of a detection to be reported.")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-detections")
                    .nick("Maximum detections")
                    .blurb("Report at most this many detections per frame, the most confident first (0: no limit).")
                    .maximum(10_000)
                    .default_value(DEFAULT_MAX_DETECTIONS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("labels")
                    .nick("Class filter")
                    .blurb("Comma-separated class names to report, e.g. \"person,car\" (case-insensitive). Empty: all classes.")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("class-thresholds")
                    .nick("Per-class thresholds")
                    .blurb(
                        "Thresholds for some classes, overriding `threshold` for them, e.g. \
                         \"person=0.5,car=0.4\" (labels case-insensitive). A malformed list is refused \
                         with a warning and the previous one stays.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("ONNX Runtime intra-op threads for the model (0: ONNX Runtime's default, one per core).")
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default::<AsyncDetectMode>("mode", DEFAULT_MODE)
                    .nick("Mode")
                    .blurb(
                        "async: buffers never wait and carry the newest finished result. sync: every \
                         buffer waits for its own result (offline files, correctness checks); adds the \
                         inference time to the reported latency.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-age")
                    .nick("Maximum result age")
                    .blurb(
                        "Do not attach results computed on a frame more than this many nanoseconds \
                         (stream time) away from the buffer's own timestamp (0: any age).",
                    )
                    .default_value(DEFAULT_MAX_AGE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default::<AsyncDetectChannelOrder>(
                    "channel-order",
                    AsyncDetectChannelOrder::Auto,
                )
                .nick("Channel order")
                .blurb(
                    "Colour channel order the model expects (models do not declare it): auto \
                     uses the family's (BGR for NanoDet, RGB for the others).",
                )
                .mutable_ready()
                .build(),
                glib::ParamSpecUInt::builder("input-width")
                    .nick("Input width")
                    .blurb("Model input width, for models whose width is dynamic (0: from the model; at most 4096).")
                    .maximum(crate::preprocess::MAX_INPUT_SIDE as u32)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("input-height")
                    .nick("Input height")
                    .blurb("Model input height, for models whose height is dynamic (0: from the model; at most 4096).")
                    .maximum(crate::preprocess::MAX_INPUT_SIDE as u32)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("input-mean")
                    .nick("Input mean")
                    .blurb(
                        "For float inputs: value subtracted from each 0-255 pixel, one number or three \
                         (per channel, in the model's channel order). Unset: 0.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("input-std")
                    .nick("Input standard deviation")
                    .blurb(
                        "For float inputs: divisor applied after the mean, one number or three. Unset: \
                         255 (inputs in 0..1). uint8 inputs take pixels as they are.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default::<AsyncDetectDecoder>("decoder", AsyncDetectDecoder::Auto)
                    .nick("Decoder")
                    .blurb(
                        "How to read the model's outputs: auto (recognised from their names and shapes), \
                         or forced to ssd, yolo, blazeface or nanodet.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default::<AsyncDetectTracking>("tracking", DEFAULT_TRACKING)
                    .nick("Tracking")
                    .blurb(
                        "none: results as detected. iou: each object keeps an id while in view (ROI id and \
                         an `object_id` parameter). predict: ids, and on buffers between inferences boxes \
                         are moved forward from each object's velocity (marked `predicted`).",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("track-lost-time")
                    .nick("Track lost time")
                    .blurb("Nanoseconds an object may go undetected and still keep its id when it is seen again.")
                    .default_value(DEFAULT_TRACK_LOST_TIME)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecInt::builder("inference-nice")
                    .nick("Inference niceness")
                    .blurb(
                        "Scheduling niceness of the inference threads in async mode (0 to 19; never \
                         below the process's own). Higher lets the video preempt the model at once when \
                         both want the CPU; above 0 the threads also run under SCHED_BATCH, so waking \
                         them never preempts the video. Sync mode keeps normal priority: the video \
                         waits anyway.",
                    )
                    .minimum(0)
                    .maximum(19)
                    .default_value(DEFAULT_INFERENCE_NICE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb(
                        "Post an `asyncdetect` element message with the detections on the bus after \
                         every inference. Turn off when nothing reads the bus.",
                    )
                    .default_value(DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default::<AsyncDetectInputResize>(
                    "input-resize",
                    AsyncDetectInputResize::Auto,
                )
                .nick("Input resize")
                .blurb(
                    "How frames are fitted into the model input: auto (letterbox for YOLO models, \
                     stretch for the others: what each family is trained with), stretch or \
                     letterbox. Boxes always come back in frame coordinates.",
                )
                .mutable_playing()
                .build(),
                glib::ParamSpecDouble::builder("nms-iou")
                    .nick("NMS IoU threshold")
                    .blurb(
                        "For models whose non-maximum suppression runs in the element (YOLO): a box \
                         overlapping a more confident box of the same class by more than this IoU is \
                         dropped.",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_NMS_IOU)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("roi")
                    .nick("Region of interest")
                    .blurb(
                        "Only look at part of the picture, in fractions of the frame: a rectangle \
                         \"x,y,width,height\" (e.g. \"0.5,0,0.5,1\" = right half) or a polygon \
                         \"x1,y1 x2,y2 x3,y3 ...\". The model sees the region's bounding rectangle \
                         (cropped before scaling, so distant objects get more pixels); with a polygon \
                         only objects whose centre lies inside are reported. Boxes are in full-frame \
                         coordinates. Empty: the whole frame. A malformed value is refused with a \
                         warning and the previous one stays.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb(
                        "Infer at most every Nth frame: at least N buffers pass between two frames the \
                         model sees (1: any frame). Buffers in between carry the newest result.",
                    )
                    .minimum(1)
                    .maximum(100_000)
                    .default_value(DEFAULT_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("max-fps")
                    .nick("Maximum inference rate")
                    .blurb(
                        "Infer at most this many frames per second of stream time for this stream \
                         (0: as fast as the model allows). Frames are picked by timestamp, so the rate \
                         holds whatever the video's frame rate. Combines with interval.",
                    )
                    .minimum(0.0)
                    .maximum(1000.0)
                    .default_value(DEFAULT_MAX_FPS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("motion-gating")
                    .nick("Motion gating")
                    .blurb(
                        "Skip the model while the picture does not change (frame differencing on a \
                         small grey thumbnail, in the inference thread). The last detections and \
                         tracks stay attached; inference resumes on the first frame with motion.",
                    )
                    .default_value(DEFAULT_MOTION_GATING)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("motion-threshold")
                    .nick("Motion threshold")
                    .blurb(
                        "With motion-gating: the fraction of the picture (0 to 1) that must change \
                         since the last inference to run the model again.",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_MOTION_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("model-instance-id")
                    .nick("Model instance id")
                    .blurb(
                        "Elements in one process naming the same id share one ONNX Runtime session and \
                         its threads (the first to start decides the model and threads). Unset: \
                         elements with the same model and threads share. Frames from all sharing \
                         streams are served oldest first, batched when the model takes any batch size.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("session-lanes")
                    .nick("Session lanes")
                    .blurb(
                        "How many frames the shared model instance may run at once (as DL Streamer's \
                         nireq). Each lane is one more ONNX Runtime session of the model (more \
                         memory), opened only when frames of several streams wait; frames still \
                         queue oldest first. 0: one lane per `threads` threads per core plus one \
                         (one lane when threads is 0, which uses every core). For many cameras set \
                         threads=1: it gives the most inferences per second. The first element to \
                         start decides.",
                    )
                    .minimum(0)
                    .maximum(64)
                    .default_value(DEFAULT_SESSION_LANES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("session-runs")
                    .nick("Session runs")
                    .blurb(
                        "Times the shared ONNX Runtime session ran, for all elements sharing it \
                         (see session-frames).",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("session-frames")
                    .nick("Session frames")
                    .blurb(
                        "Frames the shared session ran on, for all elements sharing it: more than \
                         session-runs when frames of several streams were batched.",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-unchanged")
                    .nick("Frames unchanged")
                    .blurb("Frames the model did not run on because motion-gating found no change.")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-in")
                    .nick("Frames in")
                    .blurb("Buffers that passed through since the element started.")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-inferred")
                    .nick("Frames inferred")
                    .blurb("Frames the model ran on since the element started.")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-skipped")
                    .nick("Frames skipped")
                    .blurb(
                        "Frames passed on without inference (each still carries the newest result): left out \
                         by interval or max-fps, not handed over because the model was busy, replaced by a \
                         newer frame while waiting, or dropped by a flush.",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("inference-fps")
                    .nick("Inference rate")
                    .blurb("Inferences finished per second over the last two seconds.")
                    .minimum(0.0)
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("session-users")
                    .nick("Session users")
                    .blurb(
                        "Elements in this process sharing this element's ONNX Runtime session: elements \
                         with the same model and threads share one copy of its weights (0 until loaded).",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("inference-latency")
                    .nick("Inference latency")
                    .blurb("Smoothed time in nanoseconds from taking a frame to its result (conversion, model, decoding).")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let optional_string = |value: &glib::Value| {
            value
                .get::<Option<String>>()
                .ok()
                .flatten()
                .filter(|s| !s.is_empty())
        };
        match pspec.name() {
            "model-location" => {
                lock(&self.settings).model_location = optional_string(value);
                self.reload_model();
            }
            "labels-location" => {
                lock(&self.settings).labels_location = optional_string(value);
                self.reload_model();
            }
            "onnxruntime-library" => lock(&self.settings).onnxruntime_library = optional_string(value),
            "threshold" => {
                let threshold = value.get::<f64>().unwrap_or(DEFAULT_THRESHOLD) as f32;
                self.update_filter(|f| f.threshold = threshold);
            }
            "max-detections" => {
                let max = value.get::<u32>().unwrap_or(DEFAULT_MAX_DETECTIONS) as usize;
                self.update_filter(|f| f.max_detections = max);
            }
            "labels" => {
                let list = optional_string(value).unwrap_or_default();
                let classes = DetectionFilter::parse_classes(&list);
                lock(&self.settings).labels_filter = list;
                self.update_filter(|f| f.classes = classes);
            }
            "class-thresholds" => {
                let list = optional_string(value).unwrap_or_default();
                match DetectionFilter::parse_class_thresholds(&list) {
                    Ok(thresholds) => {
                        lock(&self.settings).class_thresholds = list;
                        self.update_filter(|f| f.class_thresholds = thresholds);
                    }
                    Err(e) => gst::element_imp_warning!(
                        self,
                        gst::LibraryError::Settings,
                        ("Ignoring class-thresholds \"{}\": {}", list, e)
                    ),
                }
            }
            "threads" => lock(&self.settings).threads = value.get().unwrap_or(DEFAULT_THREADS),
            "mode" => lock(&self.settings).mode = value.get().unwrap_or(DEFAULT_MODE),
            "max-age" => lock(&self.settings).max_age = value.get().unwrap_or(DEFAULT_MAX_AGE),
            "channel-order" => lock(&self.settings).channel_order = value.get().unwrap_or_default(),
            "input-width" => lock(&self.settings).input_width = value.get().unwrap_or(0),
            "input-height" => lock(&self.settings).input_height = value.get().unwrap_or(0),
            "input-mean" => lock(&self.settings).input_mean = optional_string(value),
            "input-std" => lock(&self.settings).input_std = optional_string(value),
            "inference-nice" => {
                lock(&self.settings).inference_nice = value.get().unwrap_or(DEFAULT_INFERENCE_NICE)
            }
            "tracking" => lock(&self.settings).tracking = value.get().unwrap_or(DEFAULT_TRACKING),
            "decoder" => lock(&self.settings).decoder = value.get().unwrap_or_default(),
            "track-lost-time" => {
                lock(&self.settings).track_lost_time = value.get().unwrap_or(DEFAULT_TRACK_LOST_TIME)
            }
            "post-messages" => {
                lock(&self.settings).post_messages = value.get().unwrap_or(DEFAULT_POST_MESSAGES)
            }
            "input-resize" => lock(&self.settings).input_resize = value.get().unwrap_or_default(),
            "nms-iou" => lock(&self.settings).nms_iou = value.get().unwrap_or(DEFAULT_NMS_IOU),
            "roi" => {
                let text = optional_string(value).unwrap_or_default();
                match Region::parse(&text) {
                    Ok(region) => {
                        let mut settings = lock(&self.settings);
                        settings.roi = text;
                        settings.region = region.map(Arc::new);
                    }
                    Err(e) => gst::element_imp_warning!(
                        self,
                        gst::LibraryError::Settings,
                        ("Ignoring roi \"{}\": {}", text, e)
                    ),
                }
            }
            "interval" => lock(&self.settings).interval = value.get().unwrap_or(DEFAULT_INTERVAL),
            "max-fps" => lock(&self.settings).max_fps = value.get().unwrap_or(DEFAULT_MAX_FPS),
            "motion-gating" => {
                lock(&self.settings).motion_gating = value.get().unwrap_or(DEFAULT_MOTION_GATING)
            }
            "motion-threshold" => {
                lock(&self.settings).motion_threshold = value.get().unwrap_or(DEFAULT_MOTION_THRESHOLD)
            }
            "model-instance-id" => lock(&self.settings).model_instance_id = optional_string(value),
            "session-lanes" => {
                lock(&self.settings).session_lanes = value.get().unwrap_or(DEFAULT_SESSION_LANES)
            }
            other => gst::warning!(CAT, imp = self, "Property {other} is not writable"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings();
        let counter = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed).to_value();
        match pspec.name() {
            "model-location" => settings.model_location.to_value(),
            "labels-location" => settings.labels_location.to_value(),
            "onnxruntime-library" => settings.onnxruntime_library.to_value(),
            "threshold" => (settings.filter.threshold as f64).to_value(),
            "max-detections" => (settings.filter.max_detections as u32).to_value(),
            "labels" => settings.labels_filter.to_value(),
            "class-thresholds" => settings.class_thresholds.to_value(),
            "threads" => settings.threads.to_value(),
            "mode" => settings.mode.to_value(),
            "max-age" => settings.max_age.to_value(),
            "channel-order" => settings.channel_order.to_value(),
            "input-width" => settings.input_width.to_value(),
            "input-height" => settings.input_height.to_value(),
            "input-mean" => settings.input_mean.to_value(),
            "input-std" => settings.input_std.to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "inference-nice" => settings.inference_nice.to_value(),
            "tracking" => settings.tracking.to_value(),
            "decoder" => settings.decoder.to_value(),
            "track-lost-time" => settings.track_lost_time.to_value(),
            "input-resize" => settings.input_resize.to_value(),
            "nms-iou" => settings.nms_iou.to_value(),
            "roi" => settings.roi.to_value(),
            "interval" => settings.interval.to_value(),
            "max-fps" => settings.max_fps.to_value(),
            "motion-gating" => settings.motion_gating.to_value(),
            "motion-threshold" => settings.motion_threshold.to_value(),
            "model-instance-id" => settings.model_instance_id.to_value(),
            "session-lanes" => settings.session_lanes.to_value(),
            "frames-unchanged" => counter(&self.stats.frames_unchanged),
            "session-runs" => self.stats.session_runs().0.to_value(),
            "session-frames" => self.stats.session_runs().1.to_value(),
            "frames-in" => counter(&self.stats.frames_in),
            "frames-inferred" => counter(&self.stats.frames_inferred),
            "frames-skipped" => counter(&self.stats.frames_skipped),
            "inference-fps" => self.stats.inference_fps().to_value(),
            "inference-latency" => counter(&self.stats.inference_latency_ns),
            "session-users" => (self.stats.session_users().min(u32::MAX as usize) as u32).to_value(),
            _ => {
                gst::warning!(CAT, imp = self, "Unknown property {}", pspec.name());
                pspec.default_value().clone()
            }
        }
    }
}

impl GstObjectImpl for AsyncDetect {}

impl ElementImpl for AsyncDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Asynchronous object detector",
                "Filter/Analyzer/Video",
                "Runs an ONNX object detector on an internal thread and attaches the newest \
                 detections to every passing buffer as GstVideoRegionOfInterestMeta, without \
                 delaying the video",
                "asyncdetect developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(crate::pads::raw_video_templates);
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PausedToReady {
            // Release a sync-mode wait before the pads deactivate, or deactivation would wait on it.
            self.shut_down_worker();
        }
        self.parent_change_state(transition)
    }
}

impl BaseTransformImpl for AsyncDetect {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings();
        let config = Self::model_config(&settings).map_err(|e| e.to_error_message())?;
        self.stats.reset();
        let shared = Arc::new(Shared::new(self.stats.clone()));
        gst::info!(CAT, imp = self, "Starting, model {}", config.source);
        let worker = worker::spawn(
            &self.obj(),
            shared.clone(),
            config,
            settings.mode == AsyncDetectMode::Sync,
        )
        .map_err(|e| {
            gst::error_msg!(
                gst::CoreError::Thread,
                ["Could not start the inference thread: {}", e]
            )
        })?;
        *lock(&self.state) = Some(State {
            shared,
            worker: Some(worker),
            info: None,
            seq: 0,
            last_arrival: None,
            arrival_interval: None,
            last_taken: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let state = lock(&self.state).take();
        if let Some(mut state) = state {
            state.shared.shut_down();
            if let Some(worker) = state.worker.take() {
                if worker.thread().id() == std::thread::current().id() {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "Stopped from the inference thread; it ends on its own"
                    );
                } else if worker.join().is_err() {
                    gst::warning!(CAT, imp = self, "The inference thread ended with a panic");
                }
            }
        }
        gst::info!(CAT, imp = self, "Stopped");
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "Unsupported caps {incaps:?}"))?;
        if info.width() == 0 || info.height() == 0 {
            return Err(gst::loggable_error!(
                CAT,
                "Unsupported frame size {}x{}",
                info.width(),
                info.height()
            ));
        }
        gst::debug!(CAT, imp = self, "Configured for {incaps:?} -> {outcaps:?}");
        if let Some(state) = lock(&self.state).as_mut() {
            state.info = Some(info);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        let shared = lock(&self.state).as_ref().map(|s| s.shared.clone());
        if let Some(shared) = shared {
            match event.view() {
                gst::EventView::FlushStart(_) => shared.start_flush(),
                gst::EventView::FlushStop(_) => shared.stop_flush(),
                _ => (),
            }
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(latency) = query.view_mut()
        {
            let upstream_ok = self.obj().sink_pad().peer_query(latency.query_mut());
            if upstream_ok && self.settings().mode == AsyncDetectMode::Sync {
                // Each buffer waits for its inference: that time is latency the sinks must allow.
                let (live, min, max) = latency.result();
                let ours =
                    gst::ClockTime::from_nseconds(self.stats.inference_latency_ns.load(Ordering::Relaxed));
                gst::debug!(CAT, imp = self, "Adding {ours} of sync-mode latency");
                latency.set(live, min + ours, max.map(|max| max + ours));
            }
            return upstream_ok;
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn transform_ip(&self, buffer: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings();
        let (shared, info, seq, arrival_interval, rate_allows) = {
            let mut guard = lock(&self.state);
            let Some(state) = guard.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            let Some(info) = state.info.clone() else {
                return Err(gst::FlowError::NotNegotiated);
            };
            let now = Instant::now();
            if let Some(last) = state.last_arrival.replace(now) {
                let interval = now.duration_since(last);
                state.arrival_interval = Some(worker::smoothed(state.arrival_interval, interval));
            }
            state.seq += 1;
            let rate_allows = settings.rate_allows(state.seq, buffer.pts(), state.last_taken);
            (
                state.shared.clone(),
                info,
                state.seq,
                state.arrival_interval,
                rate_allows,
            )
        };
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        let worker::Snapshot {
            latest,
            generation,
            failed,
        } = shared.snapshot();

        // The worker gets a shallow copy (a new buffer sharing this one's memory), made only when
        // it is handed over and before our metas are added, so it carries none of them.
        let make_job = || Job {
            buffer: Some(buffer.to_owned()),
            pts: buffer.pts(),
            info: info.clone(),
            seq,
            generation,
            filter: settings.filter.clone(),
            post_messages: settings.post_messages,
            tracking: settings.tracking,
            track_lost_time: settings.track_lost_time as f64 / 1e9,
            fit: match settings.input_resize {
                AsyncDetectInputResize::Auto => None,
                AsyncDetectInputResize::Stretch => Some(Fit::Stretch),
                AsyncDetectInputResize::Letterbox => Some(Fit::Letterbox),
            },
            region: settings.region.clone(),
            nms_iou: settings.nms_iou as f32,
            motion_threshold: settings.motion_gating.then_some(settings.motion_threshold as f32),
        };
        let mark_taken = || {
            if let Some(state) = lock(&self.state).as_mut() {
                state.last_taken = Some((seq, buffer.pts()));
            }
        };

        if !rate_allows {
            // Not this stream's turn under interval/max-fps: pass on with the newest result.
            self.stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
        } else if settings.mode == AsyncDetectMode::Sync {
            if failed {
                return Err(gst::FlowError::Error);
            }
            mark_taken();
            return match shared.process_and_wait(make_job()) {
                WaitOutcome::Done(result) => {
                    if let Some(result) = result {
                        Self::attach(buffer, &info, &result, 0);
                    }
                    Ok(gst::FlowSuccess::Ok)
                }
                WaitOutcome::Flushing => Err(gst::FlowError::Flushing),
                WaitOutcome::Failed => Err(gst::FlowError::Error),
            };
        }

        if rate_allows && !failed && shared.offer(make_job, arrival_interval) {
            mark_taken();
        }
        if let Some(result) = latest {
            let attached = Self::attach(buffer, &info, &result, settings.max_age);
            gst::log!(
                CAT,
                imp = self,
                "Attached {attached} detections from frame {}",
                result.seq
            );
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
