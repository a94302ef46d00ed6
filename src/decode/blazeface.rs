//! BlazeFace (MediaPipe's face detector): raw scores and box regressions per anchor, over two
//! feature maps; anchors are the SSD grid MediaPipe uses (cell centres, unit size), decoded here,
//! then non-maximum suppression.

use ndarray::ArrayViewD;

use super::yolo::non_maximum_suppression;
use super::{DecodeError, OutputInfo, RawDetection};
use crate::detection::NormalizedBox;

/// Overlapping face boxes above this IoU are the same face.
const NMS_IOU: f32 = 0.3;
/// Faces below this score are dropped before NMS; the user's threshold applies afterwards.
const CANDIDATE_SCORE: f32 = 0.3;

/// One feature map: its score and regressor outputs and its anchor grid.
#[derive(Debug, Clone, PartialEq)]
struct Head {
    scores: usize,
    boxes: usize,
    grid: usize,
    per_cell: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlazeFaceDecoder {
    heads: Vec<Head>,
    input_width: f32,
    input_height: f32,
}

/// Anchors per cell and grid side for `count` anchors on a square map (2 or 6 per cell).
fn grid_of(count: usize) -> Option<(usize, usize)> {
    [2, 6].into_iter().find_map(|per_cell| {
        let cells = count / per_cell;
        let side = (cells as f64).sqrt().round() as usize;
        (side * side * per_cell == count).then_some((side, per_cell))
    })
}

impl BlazeFaceDecoder {
    /// Recognises pairs of `[1,N,1]` scores and `[1,N,16]` regressors (box + 6 keypoints).
    pub fn for_outputs(outputs: &[OutputInfo], input_width: usize, input_height: usize) -> Option<Self> {
        let anchors_of = |o: &OutputInfo, last: i64| match o.shape.as_slice() {
            [b, n, l] if *b <= 1 && *n > 0 && *l == last => Some(*n as usize),
            _ => None,
        };
        let mut heads = Vec::new();
        for (scores, output) in outputs.iter().enumerate() {
            let Some(count) = anchors_of(output, 1) else {
                continue;
            };
            let boxes = outputs.iter().position(|o| anchors_of(o, 16) == Some(count))?;
            let (grid, per_cell) = grid_of(count)?;
            heads.push(Head {
                scores,
                boxes,
                grid,
                per_cell,
            });
        }
        (!heads.is_empty() && heads.len() * 2 == outputs.len()).then_some(BlazeFaceDecoder {
            heads,
            input_width: input_width as f32,
            input_height: input_height as f32,
        })
    }

    pub fn decode(&self, outputs: &[ArrayViewD<'_, f32>]) -> Result<Vec<RawDetection>, DecodeError> {
        let mut candidates = Vec::new();
        for head in &self.heads {
            let (Some(scores), Some(boxes)) = (outputs.get(head.scores), outputs.get(head.boxes)) else {
                return Err(DecodeError("a BlazeFace output is missing".into()));
            };
            let count = head.grid * head.grid * head.per_cell;
            if scores.len() < count || boxes.len() < count * 16 {
                return Err(DecodeError("BlazeFace outputs smaller than their anchors".into()));
            }
            let (scores, boxes) = (
                scores.iter().copied().collect::<Vec<f32>>(),
                boxes.iter().copied().collect::<Vec<f32>>(),
            );
            for anchor in 0..count {
                let score = 1.0 / (1.0 + (-scores[anchor].clamp(-100.0, 100.0)).exp());
                if !score.is_finite() || score < CANDIDATE_SCORE {
                    continue;
                }
                let cell = anchor / head.per_cell;
                let (ax, ay) = (
                    ((cell % head.grid) as f32 + 0.5) / head.grid as f32,
                    ((cell / head.grid) as f32 + 0.5) / head.grid as f32,
                );
                let r = &boxes[anchor * 16..anchor * 16 + 4];
                let (cx, cy) = (r[0] / self.input_width + ax, r[1] / self.input_height + ay);
                let (w, h) = (r[2] / self.input_width, r[3] / self.input_height);
                candidates.push(RawDetection {
                    class_id: 0,
                    confidence: score,
                    bbox: NormalizedBox {
                        x_min: cx - w / 2.0,
                        y_min: cy - h / 2.0,
                        x_max: cx + w / 2.0,
                        y_max: cy + h / 2.0,
                    }
                    .clamped(),
                });
            }
        }
        Ok(non_maximum_suppression(candidates, NMS_IOU))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn info(name: &str, shape: &[i64]) -> OutputInfo {
        OutputInfo {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn recognises_the_back_model_and_its_grids() {
        let outputs = [
            info("Identity:0", &[1, 512, 1]),
            info("Identity_1:0", &[1, 384, 1]),
            info("Identity_2:0", &[1, 512, 16]),
            info("Identity_3:0", &[1, 384, 16]),
        ];
        let d = BlazeFaceDecoder::for_outputs(&outputs, 256, 256).unwrap();
        assert_eq!(
            d.heads[0],
            Head {
                scores: 0,
                boxes: 2,
                grid: 16,
                per_cell: 2
            }
        );
        assert_eq!(
            d.heads[1],
            Head {
                scores: 1,
                boxes: 3,
                grid: 8,
                per_cell: 6
            }
        );
        assert!(BlazeFaceDecoder::for_outputs(&outputs[..3], 256, 256).is_none());
    }

    #[test]
    fn decodes_a_box_around_its_anchor() {
        // One head of 2x2 cells x 2 anchors; anchor 6 (cell (1,1)) is confident.
        let mut scores = vec![-10.0f32; 8];
        scores[6] = 3.0;
        let mut boxes = vec![0.0f32; 8 * 16];
        boxes[6 * 16..6 * 16 + 4].copy_from_slice(&[10.0, -20.0, 50.0, 40.0]);
        let decoder = BlazeFaceDecoder {
            heads: vec![Head {
                scores: 0,
                boxes: 1,
                grid: 2,
                per_cell: 2,
            }],
            input_width: 100.0,
            input_height: 100.0,
        };
        let scores = ArrayD::from_shape_vec(vec![1, 8, 1], scores).unwrap();
        let boxes = ArrayD::from_shape_vec(vec![1, 8, 16], boxes).unwrap();
        let found = decoder.decode(&[scores.view(), boxes.view()]).unwrap();
        assert_eq!(found.len(), 1);
        assert!((found[0].confidence - 0.952_574).abs() < 1e-5);
        // Anchor centre (0.75, 0.75), moved by (0.1, -0.2), size 0.5 x 0.4.
        let b = found[0].bbox;
        assert!((b.x_min - 0.6).abs() < 1e-6 && (b.y_min - 0.35).abs() < 1e-6);
        assert!((b.x_max - 1.0).abs() < 1e-6 && (b.y_max - 0.75).abs() < 1e-6);
    }
}
