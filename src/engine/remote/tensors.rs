//! Between KServe v2 tensors and what the rest of the engine uses: the model's metadata as a
//! [`Signature`] the pre-processing and decoders read as they read an ONNX file's, requests built
//! from pre-processed frames, and responses read back as f32 arrays. Pure: no network.

use ndarray::{ArrayD, IxDyn};

use super::proto::model_infer_request::InferInputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{ModelInferResponse, ModelMetadataResponse};
use crate::decode::OutputInfo;
use crate::engine::queue::Frames;
use crate::engine::{InputInfo, InputKind, Signature};
use crate::preprocess::ElementType;

/// How the server's tensors relate to the ONNX-like shapes the decoders expect.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub input_name: String,
    /// The server batches: every tensor has a batch dimension first. Otherwise the server's
    /// shapes have none and requests carry one frame.
    pub batched: bool,
    /// Per output, in the signature's order: its name, and whether it is a per-frame scalar the
    /// server gives as `[batch, 1]` (Triton's shape for it when batching), read as `[batch]`.
    pub outputs: Vec<(String, bool)>,
}

/// The model's metadata as a signature, and how to talk to it.
pub fn read_metadata(metadata: &ModelMetadataResponse) -> Result<(Signature, Layout), String> {
    let [input] = metadata.inputs.as_slice() else {
        return Err(format!(
            "the model has {} inputs; only models with one image input are supported",
            metadata.inputs.len()
        ));
    };
    // An image input is [batch, h, w, c] or [batch, c, h, w]; without the batch, the server
    // does not batch this model.
    let batched = input.shape.len() != 3;
    let with_batch = |shape: &[i64]| -> Vec<i64> {
        if batched {
            shape.to_vec()
        } else {
            std::iter::once(1).chain(shape.iter().copied()).collect()
        }
    };
    let inputs = vec![InputInfo {
        name: input.name.clone(),
        kind: InputKind::Tensor(match input.datatype.as_str() {
            "UINT8" => Some(ElementType::U8),
            "FP32" => Some(ElementType::F32),
            _ => None,
        }),
        shape: with_batch(&input.shape),
    }];
    let mut outputs = Vec::with_capacity(metadata.outputs.len());
    let mut layout_outputs = Vec::with_capacity(metadata.outputs.len());
    for TensorMetadata { name, shape, .. } in &metadata.outputs {
        let shape = with_batch(shape);
        let scalar_per_frame = batched && matches!(shape.as_slice(), [_, 1]);
        outputs.push(OutputInfo {
            name: name.clone(),
            shape: if scalar_per_frame {
                shape[..1].to_vec()
            } else {
                shape
            },
        });
        layout_outputs.push((name.clone(), scalar_per_frame));
    }
    Ok((
        Signature { inputs, outputs },
        Layout {
            input_name: input.name.clone(),
            batched,
            outputs: layout_outputs,
        },
    ))
}

/// The request's input tensor and its raw contents for `frames` (joined, `shape` says how many).
pub fn input_tensor(layout: &Layout, shape: [usize; 4], frames: &Frames<'_>) -> (InferInputTensor, Vec<u8>) {
    let (datatype, bytes) = match frames {
        Frames::U8(parts) => ("UINT8", parts.concat()),
        Frames::F32(parts) => (
            "FP32",
            parts
                .iter()
                .flat_map(|part| part.iter().flat_map(|v| v.to_le_bytes()))
                .collect(),
        ),
    };
    let dims = if layout.batched { &shape[..] } else { &shape[1..] };
    let tensor = InferInputTensor {
        name: layout.input_name.clone(),
        datatype: datatype.to_string(),
        shape: dims.iter().map(|&d| d as i64).collect(),
    };
    (tensor, bytes)
}

/// Every output of a response for `frames` frames, in the signature's order, with a batch
/// dimension first.
pub fn read_outputs(
    layout: &Layout,
    response: &ModelInferResponse,
    frames: usize,
) -> Result<Vec<ArrayD<f32>>, String> {
    layout
        .outputs
        .iter()
        .map(|(name, scalar_per_frame)| {
            let index = response
                .outputs
                .iter()
                .position(|o| &o.name == name)
                .ok_or_else(|| format!("the answer has no output `{name}`"))?;
            let output = &response.outputs[index];
            let values = elements(output, response.raw_output_contents.get(index))
                .map_err(|e| format!("output `{name}`: {e}"))?;
            let mut shape: Vec<usize> = output
                .shape
                .iter()
                .map(|&d| {
                    usize::try_from(d).map_err(|_| format!("output `{name}` has shape {:?}", output.shape))
                })
                .collect::<Result<_, _>>()?;
            if !layout.batched {
                shape.insert(0, 1);
            } else if *scalar_per_frame && shape.len() == 2 {
                shape.truncate(1);
            }
            if shape.first() != Some(&frames) {
                return Err(format!(
                    "output `{name}` has shape {:?} for {frames} frames",
                    output.shape
                ));
            }
            ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|_| {
                format!(
                    "output `{name}`: its data does not fill its shape {:?}",
                    output.shape
                )
            })
        })
        .collect()
}

/// An output's elements as f32, from its raw bytes (little-endian) or its typed contents.
fn elements(output: &InferOutputTensor, raw: Option<&Vec<u8>>) -> Result<Vec<f32>, String> {
    fn from_le<const N: usize>(raw: &[u8], convert: impl Fn([u8; N]) -> f32) -> Result<Vec<f32>, String> {
        if !raw.len().is_multiple_of(N) {
            return Err(format!("{} bytes is not a whole number of elements", raw.len()));
        }
        Ok(raw
            .chunks_exact(N)
            .map(|chunk| {
                let mut bytes = [0u8; N];
                bytes.copy_from_slice(chunk);
                convert(bytes)
            })
            .collect())
    }
    let datatype = output.datatype.as_str();
    if let Some(raw) = raw {
        return match datatype {
            "FP32" => from_le(raw, f32::from_le_bytes),
            "FP64" => from_le(raw, |b| f64::from_le_bytes(b) as f32),
            "INT64" => from_le(raw, |b| i64::from_le_bytes(b) as f32),
            "INT32" => from_le(raw, |b| i32::from_le_bytes(b) as f32),
            "INT16" => from_le(raw, |b| f32::from(i16::from_le_bytes(b))),
            "INT8" => from_le(raw, |b: [u8; 1]| f32::from(b[0] as i8)),
            "UINT64" => from_le(raw, |b| u64::from_le_bytes(b) as f32),
            "UINT32" => from_le(raw, |b| u32::from_le_bytes(b) as f32),
            "UINT16" => from_le(raw, |b| f32::from(u16::from_le_bytes(b))),
            "UINT8" | "BOOL" => from_le(raw, |b: [u8; 1]| f32::from(b[0])),
            other => Err(format!("elements of type {other} cannot be read")),
        };
    }
    let Some(contents) = &output.contents else {
        return Err("the answer carries no data for it".to_string());
    };
    Ok(match datatype {
        "FP32" => contents.fp32_contents.clone(),
        "FP64" => contents.fp64_contents.iter().map(|&v| v as f32).collect(),
        "INT64" => contents.int64_contents.iter().map(|&v| v as f32).collect(),
        "INT32" | "INT16" | "INT8" => contents.int_contents.iter().map(|&v| v as f32).collect(),
        "UINT64" => contents.uint64_contents.iter().map(|&v| v as f32).collect(),
        "UINT32" | "UINT16" | "UINT8" => contents.uint_contents.iter().map(|&v| v as f32).collect(),
        "BOOL" => contents
            .bool_contents
            .iter()
            .map(|&v| f32::from(u8::from(v)))
            .collect(),
        other => return Err(format!("elements of type {other} cannot be read")),
    })
}

#[cfg(test)]
mod tests {
    use super::super::proto::InferTensorContents;
    use super::*;

    fn tensor(name: &str, datatype: &str, shape: &[i64]) -> TensorMetadata {
        TensorMetadata {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
        }
    }

    fn ssd_metadata(batched: bool) -> ModelMetadataResponse {
        let batch = |shape: &[i64]| -> Vec<i64> {
            if batched {
                std::iter::once(-1).chain(shape.iter().copied()).collect()
            } else {
                shape.to_vec()
            }
        };
        ModelMetadataResponse {
            name: "ssd".into(),
            versions: vec!["1".into()],
            platform: "python".into(),
            inputs: vec![tensor("image", "UINT8", &batch(&[300, 300, 3]))],
            outputs: vec![
                tensor("detection_boxes", "FP32", &batch(&[20, 4])),
                tensor("detection_classes", "FP32", &batch(&[20])),
                tensor("detection_scores", "FP32", &batch(&[20])),
                tensor("num_detections", "FP32", &batch(&[1])),
            ],
        }
    }

    #[test]
    fn a_batching_servers_ssd_reads_as_the_onnx_file_does() {
        let (signature, layout) = read_metadata(&ssd_metadata(true)).unwrap();
        assert_eq!(signature.inputs[0].shape, vec![-1, 300, 300, 3]);
        assert_eq!(signature.inputs[0].kind, InputKind::Tensor(Some(ElementType::U8)));
        let shapes: Vec<&[i64]> = signature.outputs.iter().map(|o| o.shape.as_slice()).collect();
        assert_eq!(shapes, [&[-1, 20, 4][..], &[-1, 20], &[-1, 20], &[-1]]);
        assert!(layout.batched);
        assert_eq!(layout.outputs[3], ("num_detections".to_string(), true));
        // The SSD decoder recognises it as it does the ONNX file.
        let decoder = crate::decode::Decoder::for_outputs(
            &signature.outputs,
            (300, 300),
            crate::decode::DecoderChoice::Auto,
        )
        .unwrap();
        assert_eq!(decoder.name(), "ssd");
    }

    #[test]
    fn a_model_the_server_does_not_batch_gets_a_batch_of_one() {
        let (signature, layout) = read_metadata(&ssd_metadata(false)).unwrap();
        assert!(!layout.batched);
        assert_eq!(signature.inputs[0].shape, vec![1, 300, 300, 3]);
        assert_eq!(signature.outputs[3].shape, vec![1, 1]);
        let image = vec![7u8; 300 * 300 * 3];
        let (input, bytes) = input_tensor(&layout, [1, 300, 300, 3], &Frames::U8(vec![&image]));
        assert_eq!(input.shape, vec![300, 300, 3]);
        assert_eq!(bytes.len(), image.len());
    }

    #[test]
    fn requests_carry_frames_joined_little_endian() {
        let (_, layout) = read_metadata(&ssd_metadata(true)).unwrap();
        let (a, b) = ([1.0f32, 2.0], [3.0f32, -1.5]);
        let (input, bytes) = input_tensor(&layout, [2, 1, 1, 2], &Frames::F32(vec![&a, &b]));
        assert_eq!(
            (input.datatype.as_str(), input.shape.as_slice()),
            ("FP32", &[2, 1, 1, 2][..])
        );
        let back: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, [1.0, 2.0, 3.0, -1.5]);
    }

    #[test]
    fn reads_raw_and_typed_outputs_by_name_in_the_signatures_order() {
        let (_, layout) = read_metadata(&ssd_metadata(true)).unwrap();
        let raw = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let output = |name: &str, datatype: &str, shape: &[i64]| InferOutputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            contents: None,
        };
        // Outputs in another order than the metadata's, the count as INT64.
        let response = ModelInferResponse {
            outputs: vec![
                output("num_detections", "INT64", &[1, 1]),
                output("detection_scores", "FP32", &[1, 20]),
                output("detection_classes", "FP32", &[1, 20]),
                output("detection_boxes", "FP32", &[1, 20, 4]),
            ],
            raw_output_contents: vec![
                3i64.to_le_bytes().to_vec(),
                raw(&[0.5; 20]),
                raw(&[1.0; 20]),
                raw(&[0.25; 80]),
            ],
            ..Default::default()
        };
        let arrays = read_outputs(&layout, &response, 1).unwrap();
        let shapes: Vec<&[usize]> = arrays.iter().map(|a| a.shape()).collect();
        assert_eq!(shapes, [&[1, 20, 4][..], &[1, 20], &[1, 20], &[1]]);
        assert_eq!(arrays[3][[0]], 3.0);
        assert_eq!(arrays[2][[0, 5]], 0.5);

        let typed = ModelInferResponse {
            outputs: vec![InferOutputTensor {
                contents: Some(InferTensorContents {
                    int64_contents: vec![4],
                    ..Default::default()
                }),
                ..output("num_detections", "INT64", &[1, 1])
            }],
            ..Default::default()
        };
        let one = Layout {
            outputs: vec![("num_detections".into(), true)],
            ..layout.clone()
        };
        assert_eq!(read_outputs(&one, &typed, 1).unwrap()[0][[0]], 4.0);
    }

    #[test]
    fn explains_answers_it_cannot_use() {
        let (_, layout) = read_metadata(&ssd_metadata(true)).unwrap();
        let missing = ModelInferResponse::default();
        assert!(
            read_outputs(&layout, &missing, 1)
                .unwrap_err()
                .contains("no output `detection_boxes`")
        );
        let one = Layout {
            outputs: vec![("x".into(), false)],
            ..layout
        };
        let half = ModelInferResponse {
            outputs: vec![InferOutputTensor {
                name: "x".into(),
                datatype: "FP16".into(),
                shape: vec![1, 2],
                contents: None,
            }],
            raw_output_contents: vec![vec![0; 4]],
            ..Default::default()
        };
        assert!(read_outputs(&one, &half, 1).unwrap_err().contains("FP16"));
        let two_inputs = ModelMetadataResponse {
            inputs: vec![tensor("a", "FP32", &[1]), tensor("b", "FP32", &[1])],
            ..Default::default()
        };
        assert!(read_metadata(&two_inputs).unwrap_err().contains("2 inputs"));
    }
}
