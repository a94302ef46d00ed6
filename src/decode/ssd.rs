//! SSD models that include their post-processing (TFLite `TFLite_Detection_PostProcess`, or the
//! TF Object Detection API's `detection_boxes`/`detection_classes`/`detection_scores`/`num_detections`).

use ndarray::ArrayViewD;

use super::{DecodeError, OutputInfo, RawDetection};
use crate::detection::NormalizedBox;

/// Which output (by index) holds what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsdDecoder {
    pub boxes: usize,
    pub classes: usize,
    pub scores: usize,
    pub count: Option<usize>,
}

fn is_per_detection(shape: &[i64]) -> bool {
    matches!(shape, [b, _] if *b <= 1)
}

impl SsdDecoder {
    /// Recognises the layout: one `[1,N,4]` output (boxes), two `[1,N]` outputs told apart by name
    /// (`class`/`score`) or else by TFLite's order (classes before scores), and maybe a `[1]` count.
    pub fn for_outputs(outputs: &[OutputInfo]) -> Option<SsdDecoder> {
        let boxes: Vec<usize> = indices(outputs, |o| matches!(o.shape.as_slice(), [b, _, 4] if *b <= 1));
        let per_detection: Vec<usize> = indices(outputs, |o| is_per_detection(&o.shape));
        let counts: Vec<usize> = indices(outputs, |o| matches!(o.shape.as_slice(), [c] if *c <= 1));
        let ([boxes], [first, second]) = (boxes.as_slice(), per_detection.as_slice()) else {
            return None;
        };
        if counts.len() > 1 || outputs.len() != 3 + counts.len() {
            return None;
        }
        let named = |index: usize, word: &str| outputs[index].name.to_lowercase().contains(word);
        let (classes, scores) = if named(*first, "score") || named(*second, "class") {
            (*second, *first)
        } else {
            (*first, *second)
        };
        Some(SsdDecoder {
            boxes: *boxes,
            classes,
            scores,
            count: counts.first().copied(),
        })
    }

    pub fn decode(&self, outputs: &[ArrayViewD<'_, f32>]) -> Result<Vec<RawDetection>, DecodeError> {
        let get = |index: usize| {
            outputs
                .get(index)
                .and_then(|a| a.as_slice_memory_order())
                .ok_or_else(|| DecodeError(format!("output {index} is missing or not contiguous")))
        };
        let (boxes, classes, scores) = (get(self.boxes)?, get(self.classes)?, get(self.scores)?);
        let available = classes.len().min(scores.len()).min(boxes.len() / 4);
        let count = match self.count {
            Some(index) => get(index)?
                .first()
                .map_or(0, |&c| if c.is_finite() && c > 0.0 { c as usize } else { 0 }),
            None => available,
        }
        .min(available);
        Ok((0..count)
            .filter(|&i| scores[i].is_finite() && classes[i].is_finite())
            .map(|i| {
                let b = &boxes[i * 4..i * 4 + 4];
                RawDetection {
                    class_id: classes[i].round() as i32,
                    confidence: scores[i],
                    bbox: NormalizedBox {
                        x_min: b[1],
                        y_min: b[0],
                        x_max: b[3],
                        y_max: b[2],
                    }
                    .clamped(),
                }
            })
            .collect())
    }
}

fn indices(outputs: &[OutputInfo], keep: impl Fn(&OutputInfo) -> bool) -> Vec<usize> {
    outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| keep(o))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::Decoder;
    use super::*;
    use ndarray::ArrayD;

    fn info(name: &str, shape: &[i64]) -> OutputInfo {
        OutputInfo {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    fn tflite_outputs() -> Vec<OutputInfo> {
        vec![
            info("TFLite_Detection_PostProcess", &[1, 20, 4]),
            info("TFLite_Detection_PostProcess:1", &[1, 20]),
            info("TFLite_Detection_PostProcess:2", &[1, 20]),
            info("TFLite_Detection_PostProcess:3", &[1]),
        ]
    }

    #[test]
    fn recognises_tflite_order() {
        let d = SsdDecoder::for_outputs(&tflite_outputs()).unwrap();
        assert_eq!(
            d,
            SsdDecoder {
                boxes: 0,
                classes: 1,
                scores: 2,
                count: Some(3)
            }
        );
    }

    #[test]
    fn recognises_tf_object_detection_names_in_any_order() {
        let outputs = vec![
            info("num_detections", &[1]),
            info("detection_scores", &[1, -1]),
            info("detection_boxes", &[1, -1, 4]),
            info("detection_classes", &[1, -1]),
        ];
        let d = SsdDecoder::for_outputs(&outputs).unwrap();
        assert_eq!((d.boxes, d.classes, d.scores, d.count), (2, 3, 1, Some(0)));
    }

    #[test]
    fn unknown_layouts_get_an_explanation() {
        let err = Decoder::for_outputs(
            &[info("features", &[1, 10])],
            (300, 300),
            super::super::DecoderChoice::Auto,
        )
        .unwrap_err();
        assert!(err.0.contains("`features` [1, 10]"), "{err}");
        assert!(err.0.contains("supported"), "{err}");
        assert!(SsdDecoder::for_outputs(&[info("a", &[1, 84, 8400])]).is_none());
    }

    #[test]
    fn decodes_boxes_as_x_y_and_honours_count() {
        let boxes = ArrayD::from_shape_vec(
            vec![1, 3, 4],
            vec![
                0.1, 0.2, 0.5, 0.6, // ymin xmin ymax xmax
                0.0, 0.0, 1.0, 1.0, //
                0.3, 0.3, 0.4, 0.4,
            ],
        )
        .unwrap();
        let classes = ArrayD::from_shape_vec(vec![1, 3], vec![0.0, 17.0, 2.0]).unwrap();
        let scores = ArrayD::from_shape_vec(vec![1, 3], vec![0.9, 0.4, 0.8]).unwrap();
        let count = ArrayD::from_shape_vec(vec![1], vec![2.0]).unwrap();
        let decoder = SsdDecoder {
            boxes: 0,
            classes: 1,
            scores: 2,
            count: Some(3),
        };
        let views = [boxes.view(), classes.view(), scores.view(), count.view()];
        let found = decoder.decode(&views).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].class_id, 0);
        assert_eq!(
            found[0].bbox,
            NormalizedBox {
                x_min: 0.2,
                y_min: 0.1,
                x_max: 0.6,
                y_max: 0.5
            }
        );
        assert_eq!((found[1].class_id, found[1].confidence), (17, 0.4));
    }

    #[test]
    fn absurd_count_is_capped_and_missing_outputs_are_errors() {
        let boxes = ArrayD::from_shape_vec(vec![1, 1, 4], vec![0.0, 0.0, 1.0, 1.0]).unwrap();
        let one = ArrayD::from_shape_vec(vec![1, 1], vec![1.0]).unwrap();
        let count = ArrayD::from_shape_vec(vec![1], vec![1e9]).unwrap();
        let decoder = SsdDecoder::for_outputs(&tflite_outputs()).unwrap();
        let views = [boxes.view(), one.view(), one.view(), count.view()];
        assert_eq!(decoder.decode(&views).unwrap().len(), 1);
        assert!(decoder.decode(&views[..2]).is_err());
    }
}
