//! Turning a model's output tensors into detections. No GStreamer types.
//!
//! Each output layout is its own module; [`Decoder::for_outputs`] picks one from the names and shapes
//! the model declares, so a new family (YOLO, anchors, heatmaps) is a new module and a new arm here.

mod blazeface;
mod nanodet;
mod ssd;
mod yolo;

use std::fmt;

use ndarray::ArrayViewD;

use crate::detection::NormalizedBox;
use crate::geometry::Fit;
use crate::preprocess::ChannelOrder;

pub use blazeface::BlazeFaceDecoder;
pub use nanodet::NanoDetDecoder;
pub use ssd::SsdDecoder;
pub use yolo::{DEFAULT_NMS_IOU, YoloDecoder, non_maximum_suppression};

/// A model output as the session declares it (`-1` for a dynamic dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputInfo {
    pub name: String,
    pub shape: Vec<i64>,
}

/// One object before labels and the user's filter are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawDetection {
    pub class_id: i32,
    pub confidence: f32,
    pub bbox: NormalizedBox,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Candidates of the families decoded in the element (YOLO, NanoDet) below this score are dropped
/// before NMS; the user's threshold applies afterwards.
const CANDIDATE_SCORE: f32 = 0.05;

/// The most likely class among `scores` and its score (the first on a tie).
fn best_class(scores: impl Iterator<Item = f32>) -> (usize, f32) {
    scores
        .enumerate()
        .fold((0, f32::MIN), |best, c| if c.1 > best.1 { c } else { best })
}

/// The output layouts this element understands, for error messages.
pub const SUPPORTED_LAYOUTS: &str = "SSD with post-processing: boxes [1,N,4] (ymin, xmin, ymax, xmax, \
     normalised), classes [1,N], scores [1,N] and optionally a count [1] \
     (TFLite_Detection_PostProcess or TF Object Detection API names); YOLO raw output: one [1,4+C,N] \
     (YOLOv8) or [1,N,5+C] (YOLOv5, with objectness) tensor of centre/size boxes in input pixels; \
     BlazeFace: pairs of [1,N,1] scores and [1,N,16] anchor regressions; NanoDet: per stride 8, 16, \
     32 ... a pair of [1,N,C] class probabilities and [1,N,4*(R+1)] box-side distributions, N the \
     cells of the input's grid at that stride";

/// Which decoder to use: found from the outputs, or forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecoderChoice {
    #[default]
    Auto,
    Ssd,
    Yolo,
    BlazeFace,
    NanoDet,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decoder {
    Ssd(SsdDecoder),
    Yolo(YoloDecoder),
    BlazeFace(BlazeFaceDecoder),
    NanoDet(NanoDetDecoder),
}

impl Decoder {
    /// Picks the decoder for a model's outputs, or explains what was found and what is supported.
    /// `input_size` is the model's input width and height (YOLO boxes are in its pixels).
    /// `choice` restricts the search to one family.
    pub fn for_outputs(
        outputs: &[OutputInfo],
        input_size: (usize, usize),
        choice: DecoderChoice,
    ) -> Result<Decoder, DecodeError> {
        let (w, h) = input_size;
        let allowed = |family: DecoderChoice| choice == DecoderChoice::Auto || choice == family;
        let found = None
            .or_else(|| {
                allowed(DecoderChoice::Ssd).then(|| SsdDecoder::for_outputs(outputs).map(Decoder::Ssd))?
            })
            .or_else(|| {
                allowed(DecoderChoice::Yolo)
                    .then(|| YoloDecoder::for_outputs(outputs, w, h).map(Decoder::Yolo))?
            })
            .or_else(|| {
                allowed(DecoderChoice::BlazeFace)
                    .then(|| BlazeFaceDecoder::for_outputs(outputs, w, h).map(Decoder::BlazeFace))?
            })
            .or_else(|| {
                allowed(DecoderChoice::NanoDet)
                    .then(|| NanoDetDecoder::for_outputs(outputs, w, h).map(Decoder::NanoDet))?
            });
        found.ok_or_else(|| {
            let found: Vec<String> = outputs
                .iter()
                .map(|o| format!("`{}` {:?}", o.name, o.shape))
                .collect();
            let forced = match choice {
                DecoderChoice::Auto => String::new(),
                other => format!(" as {other:?} (forced by the decoder property)"),
            };
            DecodeError(format!(
                "cannot decode the model's outputs ({}){forced}; supported: {SUPPORTED_LAYOUTS}",
                found.join(", ")
            ))
        })
    }

    /// The input normalisation the family is trained with, when the user sets none.
    pub fn preferred_normalisation(&self) -> Option<([f32; 3], [f32; 3])> {
        match self {
            // MediaPipe models take pixels in -1..1.
            Decoder::BlazeFace(_) => Some(([127.5; 3], [127.5; 3])),
            // NanoDet's ImageNet statistics, in its BGR order.
            Decoder::NanoDet(_) => Some(([103.53, 116.28, 123.675], [57.375, 57.12, 58.395])),
            _ => None,
        }
    }

    /// The confidence threshold for this family when the user sets none, where it differs from
    /// the element's: NanoDet's scores are quality-weighted (they fall with the box's expected
    /// overlap) and run lower than SSD's for the same objects; its authors' demo uses 0.35.
    pub fn preferred_threshold(&self) -> Option<f32> {
        match self {
            Decoder::NanoDet(_) => Some(0.35),
            _ => None,
        }
    }

    /// The channel order the family is trained with, when the user sets none.
    pub fn preferred_channel_order(&self) -> ChannelOrder {
        match self {
            Decoder::NanoDet(_) => ChannelOrder::Bgr,
            _ => ChannelOrder::Rgb,
        }
    }

    /// How frames are fitted into the input for this family: YOLO is trained on letterboxed
    /// images, SSD and BlazeFace on stretched ones.
    pub fn preferred_fit(&self) -> Fit {
        match self {
            Decoder::Yolo(_) => Fit::Letterbox,
            _ => Fit::Stretch,
        }
    }

    /// The overlap above which a box of the same class is suppressed, for families whose NMS runs
    /// in the element (SSD models include their own; BlazeFace uses MediaPipe's fixed value).
    pub fn set_nms_iou(&mut self, iou: f32) {
        match self {
            Decoder::Yolo(yolo) => yolo.nms_iou = iou,
            Decoder::NanoDet(nanodet) => nanodet.nms_iou = iou,
            _ => (),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Decoder::Ssd(_) => "ssd",
            Decoder::Yolo(_) => "yolo",
            Decoder::BlazeFace(_) => "blazeface",
            Decoder::NanoDet(_) => "nanodet",
        }
    }

    /// Decodes one inference; `outputs` are in the session's output order.
    pub fn decode(&self, outputs: &[ArrayViewD<'_, f32>]) -> Result<Vec<RawDetection>, DecodeError> {
        match self {
            Decoder::Ssd(ssd) => ssd.decode(outputs),
            Decoder::Yolo(yolo) => yolo.decode(outputs),
            Decoder::BlazeFace(blazeface) => blazeface.decode(outputs),
            Decoder::NanoDet(nanodet) => nanodet.decode(outputs),
        }
    }
}
