//! NanoDet-style outputs (anchor-free, generalised focal loss head): for each feature level of
//! stride 8, 16, 32 ... a pair of tensors, class probabilities `[1, N, C]` and box-side
//! distributions `[1, N, 4 * (R + 1)]`, N = (width / stride) * (height / stride) cells in row-major
//! order. Each side (left, top, right, bottom) is the expectation of a softmax over R + 1 bins, in
//! strides, measured from the cell centre. Class-aware NMS runs in the element.

use ndarray::ArrayViewD;

use super::{CANDIDATE_SCORE, DecodeError, OutputInfo, RawDetection, best_class};
use crate::detection::NormalizedBox;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Level {
    scores: usize,
    boxes: usize,
    stride: usize,
    columns: usize,
    cells: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NanoDetDecoder {
    levels: Vec<Level>,
    classes: usize,
    bins: usize,
    input_width: f32,
    input_height: f32,
    pub nms_iou: f32,
}

impl NanoDetDecoder {
    /// Recognises pairs of `[1, N, C]` and `[1, N, 4 * (R + 1)]` outputs, one pair per stride,
    /// where every N is the cell count of a grid of the input with a whole stride. The box tensor
    /// is the one whose last dimension alone is a multiple of 4, or else the smaller one.
    pub fn for_outputs(
        outputs: &[OutputInfo],
        input_width: usize,
        input_height: usize,
    ) -> Option<NanoDetDecoder> {
        if outputs.len() < 2 || !outputs.len().is_multiple_of(2) {
            return None;
        }
        let mut dims = Vec::with_capacity(outputs.len());
        for output in outputs {
            let [1, cells, last] = output.shape.as_slice() else {
                return None;
            };
            if *cells <= 0 || *last <= 0 {
                return None;
            }
            dims.push((*cells as usize, *last as usize));
        }
        let mut lasts: Vec<usize> = dims.iter().map(|d| d.1).collect();
        lasts.sort_unstable();
        lasts.dedup();
        let [a, b] = lasts[..] else { return None };
        let box_dim = match (a % 4 == 0, b % 4 == 0) {
            (true, false) => a,
            (false, true) => b,
            _ => a.min(b),
        };
        let classes = if box_dim == a { b } else { a };
        if box_dim % 4 != 0 || box_dim / 4 < 2 {
            return None;
        }
        let mut levels = Vec::new();
        for (index, &(cells, last)) in dims.iter().enumerate() {
            if last != classes {
                continue;
            }
            let partner = dims
                .iter()
                .enumerate()
                .find(|(j, d)| **d == (cells, box_dim) && !levels.iter().any(|l: &Level| l.boxes == *j))
                .map(|(j, _)| j)?;
            let stride = (1..=6).map(|p| 1usize << (p + 2)).find(|s| {
                input_width.is_multiple_of(*s)
                    && input_height.is_multiple_of(*s)
                    && (input_width / s) * (input_height / s) == cells
            })?;
            levels.push(Level {
                scores: index,
                boxes: partner,
                stride,
                columns: input_width / stride,
                cells,
            });
        }
        (levels.len() * 2 == outputs.len()).then_some(NanoDetDecoder {
            levels,
            classes,
            bins: box_dim / 4,
            input_width: input_width as f32,
            input_height: input_height as f32,
            nms_iou: super::DEFAULT_NMS_IOU,
        })
    }

    pub fn decode(&self, outputs: &[ArrayViewD<'_, f32>]) -> Result<Vec<RawDetection>, DecodeError> {
        let mut candidates = Vec::new();
        let mut probabilities = vec![0f32; self.bins];
        for level in &self.levels {
            let (Some(scores), Some(boxes)) = (outputs.get(level.scores), outputs.get(level.boxes)) else {
                return Err(DecodeError("a NanoDet output is missing".into()));
            };
            if scores.shape() != [1, level.cells, self.classes]
                || boxes.shape() != [1, level.cells, self.bins * 4]
            {
                return Err(DecodeError(format!(
                    "unexpected NanoDet output shapes {:?} and {:?}",
                    scores.shape(),
                    boxes.shape()
                )));
            }
            for cell in 0..level.cells {
                let (class, score) = best_class((0..self.classes).map(|c| scores[[0, cell, c]]));
                if !score.is_finite() || score < CANDIDATE_SCORE {
                    continue;
                }
                let stride = level.stride as f32;
                let centre_x = ((cell % level.columns) as f32 + 0.5) * stride;
                let centre_y = ((cell / level.columns) as f32 + 0.5) * stride;
                let mut side = [0f32; 4];
                for (s, distance) in side.iter_mut().enumerate() {
                    let logits = (0..self.bins).map(|k| boxes[[0, cell, s * self.bins + k]]);
                    *distance = expectation(logits, &mut probabilities) * stride;
                }
                candidates.push(RawDetection {
                    class_id: class as i32,
                    confidence: score,
                    bbox: NormalizedBox {
                        x_min: (centre_x - side[0]) / self.input_width,
                        y_min: (centre_y - side[1]) / self.input_height,
                        x_max: (centre_x + side[2]) / self.input_width,
                        y_max: (centre_y + side[3]) / self.input_height,
                    }
                    .clamped(),
                });
            }
        }
        Ok(super::non_maximum_suppression(candidates, self.nms_iou))
    }
}

/// The expected bin index under the softmax of `logits` (`scratch` holds one value per bin).
fn expectation(logits: impl Iterator<Item = f32>, scratch: &mut [f32]) -> f32 {
    let mut max = f32::MIN;
    for (slot, logit) in scratch.iter_mut().zip(logits) {
        *slot = logit;
        max = max.max(logit);
    }
    let mut total = 0.0;
    let mut weighted = 0.0;
    for (bin, value) in scratch.iter_mut().enumerate() {
        *value = (*value - max).exp();
        total += *value;
        weighted += *value * bin as f32;
    }
    if total > 0.0 { weighted / total } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn output(name: &str, shape: &[i64]) -> OutputInfo {
        OutputInfo {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn recognises_the_three_level_layout_and_refuses_others() {
        let outputs = [
            output("s32", &[1, 169, 80]),
            output("b32", &[1, 169, 44]),
            output("s16", &[1, 676, 80]),
            output("s8", &[1, 2704, 80]),
            output("b16", &[1, 676, 44]),
            output("b8", &[1, 2704, 44]),
        ];
        let decoder = NanoDetDecoder::for_outputs(&outputs, 416, 416).expect("recognised");
        assert_eq!((decoder.classes, decoder.bins), (80, 11));
        let strides: Vec<(usize, usize, usize)> = decoder
            .levels
            .iter()
            .map(|l| (l.scores, l.boxes, l.stride))
            .collect();
        assert_eq!(strides, vec![(0, 1, 32), (2, 4, 16), (3, 5, 8)]);
        // BlazeFace's anchors (two per cell) do not make whole grids.
        let blazeface = [
            output("a", &[1, 512, 1]),
            output("b", &[1, 384, 1]),
            output("c", &[1, 512, 16]),
            output("d", &[1, 384, 16]),
        ];
        assert!(NanoDetDecoder::for_outputs(&blazeface, 256, 256).is_none());
        assert!(NanoDetDecoder::for_outputs(&outputs[..3], 416, 416).is_none());
    }

    #[test]
    fn decodes_a_cell_into_a_box_around_its_centre() {
        // One level, stride 32 on a 64x64 input: 2x2 cells, 2 classes, 4 bins per side.
        let outputs = [output("scores", &[1, 4, 2]), output("boxes", &[1, 4, 16])];
        let decoder = NanoDetDecoder::for_outputs(&outputs, 64, 64).expect("recognised");
        let mut scores = ArrayD::<f32>::zeros(vec![1, 4, 2]);
        scores[[0, 3, 1]] = 0.8; // bottom-right cell, class 1
        let mut boxes = ArrayD::<f32>::from_elem(vec![1, 4, 16], -50.0);
        // Sides left/top/right/bottom certain at bins 1, 0, 1, 0: one stride left and right.
        for (side, bin) in [1, 0, 1, 0].iter().enumerate() {
            boxes[[0, 3, side * 4 + bin]] = 50.0;
        }
        let found = decoder.decode(&[scores.view(), boxes.view()]).unwrap();
        assert_eq!(found.len(), 1);
        let d = found[0];
        assert_eq!((d.class_id, d.confidence), (1, 0.8));
        // Centre (48, 48); left/right 32 px, top/bottom 0.
        let expected = [16.0 / 64.0, 48.0 / 64.0, 1.0, 48.0 / 64.0];
        let got = [d.bbox.x_min, d.bbox.y_min, d.bbox.x_max, d.bbox.y_max];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-4, "{got:?}");
        }
    }
}
