//! YOLO-style raw outputs: one tensor of candidate boxes (centre x, centre y, width, height in
//! input pixels) with per-class scores, with (YOLOv5: `[1, N, 5 + C]`) or without (YOLOv8:
//! `[1, 4 + C, N]`) an objectness column; class-aware non-maximum suppression in the element.

use ndarray::ArrayViewD;

use super::{CANDIDATE_SCORE, DecodeError, OutputInfo, RawDetection, best_class};
use crate::detection::NormalizedBox;
use crate::track::iou;

/// Boxes of one class overlapping a better one by more than this are suppressed.
pub const DEFAULT_NMS_IOU: f32 = 0.45;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YoloDecoder {
    /// Rows are candidates (`[1, N, K]`) rather than columns (`[1, K, N]`).
    pub candidates_first: bool,
    /// Column 4 is an objectness score multiplying the class scores.
    pub objectness: bool,
    pub classes: usize,
    /// The model's input size, to normalise pixel coordinates.
    pub input_width: f32,
    pub input_height: f32,
    pub nms_iou: f32,
}

impl YoloDecoder {
    /// Recognises a single `[1, K, N]` (K < N, no objectness) or `[1, N, K]` (objectness) output
    /// with K at least 5.
    pub fn for_outputs(
        outputs: &[OutputInfo],
        input_width: usize,
        input_height: usize,
    ) -> Option<YoloDecoder> {
        let [output] = outputs else { return None };
        let [batch, a, b] = output.shape.as_slice() else {
            return None;
        };
        if *batch > 1 || *a <= 0 || *b <= 0 {
            return None;
        }
        let (candidates_first, features) = if a > b { (true, *b) } else { (false, *a) };
        let objectness = candidates_first;
        let classes = features - if objectness { 5 } else { 4 };
        (classes >= 1).then_some(YoloDecoder {
            candidates_first,
            objectness,
            classes: classes as usize,
            input_width: input_width as f32,
            input_height: input_height as f32,
            nms_iou: DEFAULT_NMS_IOU,
        })
    }

    pub fn decode(&self, outputs: &[ArrayViewD<'_, f32>]) -> Result<Vec<RawDetection>, DecodeError> {
        let output = outputs
            .first()
            .ok_or_else(|| DecodeError("the YOLO output is missing".into()))?;
        let shape = output.shape();
        let [_, a, b] = shape else {
            return Err(DecodeError(format!("unexpected YOLO output shape {shape:?}")));
        };
        let (count, features) = if self.candidates_first { (*a, *b) } else { (*b, *a) };
        let first_class = if self.objectness { 5 } else { 4 };
        if features < first_class + 1 {
            return Err(DecodeError(format!(
                "YOLO output with {features} values per candidate"
            )));
        }
        let value = |candidate: usize, feature: usize| {
            if self.candidates_first {
                output[[0, candidate, feature]]
            } else {
                output[[0, feature, candidate]]
            }
        };
        let mut candidates = Vec::new();
        for i in 0..count {
            let objectness = if self.objectness { value(i, 4) } else { 1.0 };
            let (class, score) = best_class((first_class..features).map(|f| value(i, f) * objectness));
            if !score.is_finite() || score < CANDIDATE_SCORE {
                continue;
            }
            let (cx, cy, w, h) = (value(i, 0), value(i, 1), value(i, 2), value(i, 3));
            candidates.push(RawDetection {
                class_id: class as i32,
                confidence: score,
                bbox: NormalizedBox {
                    x_min: (cx - w / 2.0) / self.input_width,
                    y_min: (cy - h / 2.0) / self.input_height,
                    x_max: (cx + w / 2.0) / self.input_width,
                    y_max: (cy + h / 2.0) / self.input_height,
                }
                .clamped(),
            });
        }
        Ok(non_maximum_suppression(candidates, self.nms_iou))
    }
}

/// Class-aware NMS: most confident first; a box is dropped when it overlaps a kept box of the
/// same class by more than `max_iou`.
pub fn non_maximum_suppression(mut candidates: Vec<RawDetection>, max_iou: f32) -> Vec<RawDetection> {
    candidates.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut kept: Vec<RawDetection> = Vec::new();
    for candidate in candidates {
        if kept
            .iter()
            .all(|k| k.class_id != candidate.class_id || iou(&k.bbox, &candidate.bbox) <= max_iou)
        {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn info(shape: &[i64]) -> Vec<OutputInfo> {
        vec![OutputInfo {
            name: "output0".into(),
            shape: shape.to_vec(),
        }]
    }

    #[test]
    fn recognises_v8_and_v5_layouts() {
        let v8 = YoloDecoder::for_outputs(&info(&[1, 84, 8400]), 640, 640).unwrap();
        assert_eq!(
            (v8.candidates_first, v8.objectness, v8.classes),
            (false, false, 80)
        );
        let v5 = YoloDecoder::for_outputs(&info(&[1, 25200, 85]), 640, 640).unwrap();
        assert_eq!((v5.candidates_first, v5.objectness, v5.classes), (true, true, 80));
        assert!(YoloDecoder::for_outputs(&info(&[1, 10]), 640, 640).is_none());
        assert!(YoloDecoder::for_outputs(&info(&[1, 2, 3]), 640, 640).is_none());
    }

    /// Three candidates in v8 layout: two overlapping `person`s and a `car`.
    #[test]
    fn decodes_v8_with_class_aware_nms() {
        // Features (rows): cx, cy, w, h, score(class 0), score(class 1); candidates (columns).
        let rows = [
            [100.0, 104.0, 300.0],
            [100.0, 100.0, 200.0],
            [40.0, 40.0, 60.0],
            [80.0, 80.0, 30.0],
            [0.9, 0.6, 0.01],
            [0.0, 0.0, 0.8],
        ];
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        let output = ArrayD::from_shape_vec(vec![1, 6, 3], data).unwrap();
        // (So few candidates look like rows to the shape heuristic; real models have thousands.)
        let decoder = YoloDecoder {
            candidates_first: false,
            objectness: false,
            classes: 2,
            input_width: 400.0,
            input_height: 400.0,
            nms_iou: DEFAULT_NMS_IOU,
        };
        let found = decoder.decode(&[output.view()]).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].class_id, found[0].confidence), (0, 0.9));
        assert_eq!(
            found[0].bbox,
            NormalizedBox {
                x_min: 0.2,
                y_min: 0.15,
                x_max: 0.3,
                y_max: 0.35
            }
        );
        assert_eq!((found[1].class_id, found[1].confidence), (1, 0.8));
    }

    #[test]
    fn v5_objectness_multiplies_scores() {
        // One candidate: objectness 0.5, class scores 0.2 and 0.9.
        let output = ArrayD::from_shape_vec(vec![1, 7, 7], {
            let mut data = vec![0.0f32; 49];
            data[..7].copy_from_slice(&[50.0, 50.0, 20.0, 20.0, 0.5, 0.2, 0.9]);
            data
        })
        .unwrap();
        let decoder = YoloDecoder {
            candidates_first: true,
            objectness: true,
            classes: 2,
            input_width: 100.0,
            input_height: 100.0,
            nms_iou: DEFAULT_NMS_IOU,
        };
        let found = decoder.decode(&[output.view()]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].class_id, found[0].confidence), (1, 0.45));
    }

    #[test]
    fn nms_keeps_other_classes_and_distant_boxes() {
        let at = |x: f32, class_id: i32, confidence: f32| RawDetection {
            class_id,
            confidence,
            bbox: NormalizedBox {
                x_min: x,
                y_min: 0.0,
                x_max: x + 0.2,
                y_max: 0.2,
            },
        };
        let kept = non_maximum_suppression(
            vec![
                at(0.0, 0, 0.5),
                at(0.01, 0, 0.9),
                at(0.01, 1, 0.7),
                at(0.5, 0, 0.6),
            ],
            0.45,
        );
        let summary: Vec<_> = kept.iter().map(|d| (d.class_id, d.confidence)).collect();
        assert_eq!(summary, vec![(0, 0.9), (1, 0.7), (0, 0.6)]);
    }
}
