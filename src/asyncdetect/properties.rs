//! `asyncdetect`'s properties as `gst-inspect-1.0` shows them: names, ranges, defaults and the
//! blurbs users read.

use gst::glib;
use gst::prelude::*;

use super::settings::*;
use super::{
    AsyncDetectChannelOrder, AsyncDetectDecoder, AsyncDetectExecutionProvider, AsyncDetectInputResize,
    AsyncDetectMode, AsyncDetectTracking,
};

/// Every property, in the order gst-inspect lists them.
pub fn specs() -> Vec<glib::ParamSpec> {
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
        .blurb(
            "Minimum confidence (0 to 1) of a detection to be reported. Left unset, a NanoDet \
             model reports from 0.35 (its scores run lower than other families').",
        )
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
        .blurb(
            "Comma-separated class names to report, e.g. \"person,car\" (case-insensitive). \
             Empty: all classes. A name the model does not have is named in a warning.",
        )
        .mutable_playing()
        .build(),
    glib::ParamSpecString::builder("class-thresholds")
        .nick("Per-class thresholds")
        .blurb(
            "Thresholds for some classes, overriding `threshold` for them, e.g. \
             \"person=0.5,car=0.4\" (labels case-insensitive). A malformed list fails the start \
             when set before it; while running it is refused with a warning and the previous \
             one stays.",
        )
        .mutable_playing()
        .build(),
    glib::ParamSpecUInt::builder("threads")
        .nick("Threads")
        .blurb(
            "ONNX Runtime intra-op threads per lane of the model (0: one per core while one \
             stream uses the model, one per lane once several share it; see session-lanes).",
        )
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
    glib::ParamSpecEnum::builder_with_default::<AsyncDetectExecutionProvider>(
        "execution-provider",
        AsyncDetectExecutionProvider::Cpu,
    )
    .nick("Execution provider")
    .blurb(
        "Where ONNX Runtime runs the model: cpu, openvino, cuda or tensorrt. The ONNX Runtime \
         library loaded must have been built with it (the default one has the CPU only): \
         otherwise the start fails naming what the library has.",
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
             are moved forward from each object's velocity (marked `predicted`). visual: ids, \
             and a tracker follows every object through the frames by image motion (optical \
             flow on a small grey copy, on a thread of its own), carrying each result from the \
             frame the model saw to the newest; a scene cut forgets the tracks.",
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
             coordinates. Empty: the whole frame. A malformed value fails the start when set \
             before it; while running it is refused with a warning and the previous one stays.",
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
             queue oldest first. 0: with threads also 0, the instance adapts: one lane \
             using every core while one stream uses it, and once several do, up to \
             cores + 1 lanes of one thread each (the most inferences per second in \
             total); with threads set, cores / threads + 1 lanes. The first element to \
             start decides.",
        )
        .minimum(0)
        .maximum(64)
        .default_value(DEFAULT_SESSION_LANES)
        .mutable_ready()
        .build(),
    glib::ParamSpecString::builder("inference-server")
        .nick("Inference server")
        .blurb(
            "Run the model on an inference server speaking KServe v2 gRPC (Triton Inference \
             Server, OpenVINO Model Server, KServe) instead of in this process: \
             grpc://host:port, or grpcs://host:port for TLS (port 8001 when left out). Name \
             the model with server-model. Frames are pre-processed here and the outputs \
             decoded here, as for a local model; the server's metadata gives the input and \
             outputs. A server that is down or loses the model: a warning once, the video \
             keeps flowing, and the element retries (0.25 s, doubling to 4 s) and resumes by \
             itself (see server-status).",
        )
        .mutable_ready()
        .build(),
    glib::ParamSpecString::builder("server-model")
        .nick("Server model")
        .blurb("With inference-server: the model's name on the server.")
        .mutable_ready()
        .build(),
    glib::ParamSpecString::builder("server-model-version")
        .nick("Server model version")
        .blurb("With inference-server: the model version to use (unset: the server's choice).")
        .mutable_ready()
        .build(),
    glib::ParamSpecString::builder("server-token")
        .nick("Server token")
        .blurb(
            "With inference-server: a token sent as `authorization: Bearer <token>` with every \
             request (write-only, never logged).",
        )
        .write_only()
        .mutable_ready()
        .build(),
    glib::ParamSpecString::builder("server-headers")
        .nick("Server headers")
        .blurb(
            "With inference-server: more request headers (gRPC metadata) for gateways in front \
             of the server, as name=value pairs separated by commas.",
        )
        .mutable_ready()
        .build(),
    glib::ParamSpecString::builder("server-ca-file")
        .nick("Server CA file")
        .blurb(
            "With a grpcs:// inference-server: PEM certificates to trust besides the system's \
             (a private CA).",
        )
        .mutable_ready()
        .build(),
    glib::ParamSpecUInt::builder("server-timeout")
        .nick("Server timeout")
        .blurb(
            "With inference-server: how long one request may take, in milliseconds; a later \
             answer counts as an outage.",
        )
        .minimum(1)
        .maximum(600_000)
        .default_value(DEFAULT_SERVER_TIMEOUT_MS)
        .mutable_ready()
        .build(),
    glib::ParamSpecString::builder("server-status")
        .nick("Server status")
        .blurb(
            "With inference-server: \"connecting\", \"ready\", or \"retrying: <why>\" while \
             the server is away or does not serve the model (empty for a local model).",
        )
        .read_only()
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
    glib::ParamSpecUInt::builder("session-lanes-open")
        .nick("Session lanes open")
        .blurb(
            "Lanes (ONNX Runtime sessions of the model) the shared instance has open now, for all \
             elements sharing it: each holds its own working memory (0 until loaded).",
        )
        .read_only()
        .build(),
    glib::ParamSpecUInt64::builder("frames-unchanged")
        .nick("Frames unchanged")
        .blurb("Frames the model did not run on because motion-gating found no change.")
        .read_only()
        .build(),
    glib::ParamSpecUInt64::builder("frames-tracked")
        .nick("Frames tracked")
        .blurb(
            "Frames the visual tracker followed the objects through (tracking=visual; in async \
             mode it skips frames rather than fall behind).",
        )
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
}
