//! The model's input layout and the step from a packed 3-channel image to its input tensor.
//! No GStreamer types: colour conversion and scaling happen before this, in the inference thread.

use std::fmt;

/// The largest model input side accepted (width or height, from the model or `input-width`/
/// `input-height`). Detectors take 300 to 1280; a float input of this size already needs 200 MB,
/// and a model declaring more (by mistake or malice) would make the element allocate without limit.
pub const MAX_INPUT_SIDE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[1, height, width, 3]`, channels last (TensorFlow).
    Nhwc,
    /// `[1, 3, height, width]`, channels first (PyTorch).
    Nchw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    U8,
    F32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// What the user may set where the model cannot say (everything `None`/0 means "read the model").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputOverrides {
    pub channel_order: Option<ChannelOrder>,
    /// Used when the model's width or height is dynamic (or to override it); 0 = from the model.
    pub width: u32,
    pub height: u32,
    /// Per-channel mean and standard deviation for float inputs: `value = (pixel - mean) / std`.
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
}

/// Everything needed to turn a frame into the model's input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub layout: Layout,
    pub element_type: ElementType,
    pub width: usize,
    pub height: usize,
    pub channel_order: ChannelOrder,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Parses `"127.5"` (all channels) or `"123.675,116.28,103.53"` (one per channel).
pub fn parse_channel_values(text: &str) -> Result<[f32; 3], InputError> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            InputError(format!(
                "`{text}` is not a number or three comma-separated numbers"
            ))
        })?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(InputError(format!("`{text}` is not finite")));
    }
    match values.as_slice() {
        [v] => Ok([*v; 3]),
        [a, b, c] => Ok([*a, *b, *c]),
        _ => Err(InputError(format!(
            "`{text}` needs one value or three, not {}",
            values.len()
        ))),
    }
}

impl InputSpec {
    /// Works out the input layout from the model's declared input (`shape` uses -1 for a dynamic
    /// dimension) and the user's overrides.
    pub fn from_model(
        name: &str,
        element_type: Option<ElementType>,
        shape: &[i64],
        overrides: &InputOverrides,
    ) -> Result<InputSpec, InputError> {
        let describe = || format!("input `{name}` with shape {shape:?}");
        let element_type = element_type.ok_or_else(|| {
            InputError(format!(
                "{} has an element type other than uint8 or float32",
                describe()
            ))
        })?;
        if shape.len() != 4 {
            return Err(InputError(format!(
                "{} is not an image: expected 4 dimensions [1,H,W,3] or [1,3,H,W]",
                describe()
            )));
        }
        if shape[0] > 1 {
            return Err(InputError(format!(
                "{} has a fixed batch size above 1",
                describe()
            )));
        }
        let layout = if shape[3] == 3 {
            Layout::Nhwc
        } else if shape[1] == 3 {
            Layout::Nchw
        } else {
            return Err(InputError(format!(
                "{} has no 3-channel dimension (NHWC [1,H,W,3] or NCHW [1,3,H,W])",
                describe()
            )));
        };
        let (channels, model_h, model_w) = match layout {
            Layout::Nhwc => (shape[3], shape[1], shape[2]),
            Layout::Nchw => (shape[1], shape[2], shape[3]),
        };
        if channels != 3 && channels != -1 {
            return Err(InputError(format!(
                "{} does not have 3 colour channels",
                describe()
            )));
        }
        let pick = |forced: u32, from_model: i64, what: &str| -> Result<usize, InputError> {
            if forced > 0 {
                Ok(forced as usize)
            } else if from_model > 0 {
                Ok(from_model as usize)
            } else {
                Err(InputError(format!(
                    "{} has a dynamic {what}: set input-{what}",
                    describe()
                )))
            }
        };
        let width = pick(overrides.width, model_w, "width")?;
        let height = pick(overrides.height, model_h, "height")?;
        if width > MAX_INPUT_SIDE || height > MAX_INPUT_SIDE {
            return Err(InputError(format!(
                "{} asks for a {width}x{height} image: the largest accepted is \
                 {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE}",
                describe()
            )));
        }
        let (default_mean, default_std) = match element_type {
            ElementType::U8 => ([0.0; 3], [1.0; 3]),
            // Float models most often expect 0..1; others set input-mean/input-std.
            ElementType::F32 => ([0.0; 3], [255.0; 3]),
        };
        let std = overrides.std.unwrap_or(default_std);
        if std.contains(&0.0) {
            return Err(InputError("input-std must not be 0".into()));
        }
        Ok(InputSpec {
            name: name.to_string(),
            layout,
            element_type,
            width,
            height,
            channel_order: overrides.channel_order.unwrap_or(ChannelOrder::Rgb),
            mean: overrides.mean.unwrap_or(default_mean),
            std,
        })
    }

    pub fn tensor_shape(&self) -> [usize; 4] {
        match self.layout {
            Layout::Nhwc => [1, self.height, self.width, 3],
            Layout::Nchw => [1, 3, self.height, self.width],
        }
    }

    pub fn tensor_len(&self) -> usize {
        self.width * self.height * 3
    }

    fn check_image(&self, image: &[u8], stride: usize) -> Result<(), InputError> {
        let row = self.width * 3;
        let needed = stride * (self.height - 1) + row;
        if stride < row || image.len() < needed {
            return Err(InputError(format!(
                "image of {} bytes with stride {stride} is too small for {}x{}",
                image.len(),
                self.width,
                self.height
            )));
        }
        Ok(())
    }

    /// Copies a packed 3-channel `width` x `height` image (rows `stride` bytes apart, already in the
    /// model's channel order) into a uint8 tensor of this layout.
    pub fn fill_u8(&self, image: &[u8], stride: usize, out: &mut Vec<u8>) -> Result<(), InputError> {
        self.check_image(image, stride)?;
        out.clear();
        out.reserve(self.tensor_len());
        let row_len = self.width * 3;
        match self.layout {
            Layout::Nhwc => {
                for row in image.chunks(stride).take(self.height) {
                    out.extend_from_slice(&row[..row_len]);
                }
            }
            Layout::Nchw => {
                for channel in 0..3 {
                    for row in image.chunks(stride).take(self.height) {
                        out.extend(row[..row_len].iter().skip(channel).step_by(3));
                    }
                }
            }
        }
        Ok(())
    }

    /// Like [`fill_u8`](Self::fill_u8) for float inputs, applying `(pixel - mean) / std` per channel.
    pub fn fill_f32(&self, image: &[u8], stride: usize, out: &mut Vec<f32>) -> Result<(), InputError> {
        self.check_image(image, stride)?;
        out.clear();
        out.reserve(self.tensor_len());
        let row_len = self.width * 3;
        let scale = self.std.map(|s| 1.0 / s);
        let normalise = |value: u8, channel: usize| (value as f32 - self.mean[channel]) * scale[channel];
        match self.layout {
            Layout::Nhwc => {
                for row in image.chunks(stride).take(self.height) {
                    for pixel in row[..row_len].chunks_exact(3) {
                        out.extend((0..3).map(|c| normalise(pixel[c], c)));
                    }
                }
            }
            Layout::Nchw => {
                for channel in 0..3 {
                    for row in image.chunks(stride).take(self.height) {
                        out.extend(
                            row[..row_len]
                                .iter()
                                .skip(channel)
                                .step_by(3)
                                .map(|&v| normalise(v, channel)),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: &[i64], element_type: ElementType, overrides: &InputOverrides) -> InputSpec {
        InputSpec::from_model("x", Some(element_type), shape, overrides).unwrap()
    }

    #[test]
    fn inputs_larger_than_the_bound_are_refused_before_anything_is_allocated() {
        let huge = InputSpec::from_model(
            "image",
            Some(ElementType::U8),
            &[1, 100_000, 100_000, 3],
            &InputOverrides::default(),
        );
        let message = huge.expect_err("refused").to_string();
        assert!(
            message.contains("100000x100000") && message.contains("4096x4096"),
            "{message}"
        );
        let forced = InputOverrides {
            width: 16_384,
            height: 16_384,
            ..InputOverrides::default()
        };
        assert!(InputSpec::from_model("image", Some(ElementType::F32), &[1, 3, -1, -1], &forced).is_err());
        let largest = spec(&[1, 4096, 4096, 3], ElementType::U8, &InputOverrides::default());
        assert_eq!((largest.width, largest.height), (4096, 4096));
    }

    #[test]
    fn layout_and_size_come_from_the_model() {
        let s = spec(&[1, 300, 320, 3], ElementType::U8, &InputOverrides::default());
        assert_eq!((s.layout, s.width, s.height), (Layout::Nhwc, 320, 300));
        let s = spec(&[1, 3, 416, 416], ElementType::F32, &InputOverrides::default());
        assert_eq!((s.layout, s.width, s.std), (Layout::Nchw, 416, [255.0; 3]));
        assert_eq!(s.tensor_shape(), [1, 3, 416, 416]);
    }

    #[test]
    fn dynamic_size_needs_an_override() {
        let err = InputSpec::from_model(
            "x",
            Some(ElementType::F32),
            &[-1, 3, -1, -1],
            &InputOverrides::default(),
        )
        .unwrap_err();
        assert!(err.0.contains("input-width"), "{err}");
        let s = spec(
            &[-1, 3, -1, -1],
            ElementType::F32,
            &InputOverrides {
                width: 640,
                height: 480,
                ..Default::default()
            },
        );
        assert_eq!((s.width, s.height), (640, 480));
    }

    #[test]
    fn non_images_are_rejected() {
        let no_type = InputSpec::from_model("v", None, &[1, 3, 2, 2], &InputOverrides::default());
        assert!(no_type.unwrap_err().0.contains("element type"));
        let flat = InputSpec::from_model("v", Some(ElementType::F32), &[1, 10], &InputOverrides::default());
        assert!(flat.unwrap_err().0.contains("not an image"));
        let gray = InputSpec::from_model(
            "v",
            Some(ElementType::F32),
            &[1, 1, 8, 8],
            &InputOverrides::default(),
        );
        assert!(gray.is_err());
    }

    #[test]
    fn channel_values_parse() {
        assert_eq!(parse_channel_values("127.5").unwrap(), [127.5; 3]);
        assert_eq!(parse_channel_values(" 1, 2 ,3").unwrap(), [1.0, 2.0, 3.0]);
        assert!(parse_channel_values("1,2").is_err());
        assert!(parse_channel_values("abc").is_err());
        assert!(parse_channel_values("inf").is_err());
    }

    // A 2x2 image with 2 bytes of row padding: pixel (x, y) = [10*y + x, 100 + .., 200 + ..].
    fn padded_image() -> (Vec<u8>, usize) {
        let stride = 2 * 3 + 2;
        let mut image = vec![0xEE; stride * 2];
        for y in 0..2 {
            for x in 0..2 {
                let v = (10 * y + x) as u8;
                image[y * stride + x * 3..][..3].copy_from_slice(&[v, 100 + v, 200 + v]);
            }
        }
        (image, stride)
    }

    #[test]
    fn u8_fill_drops_padding_in_both_layouts() {
        let (image, stride) = padded_image();
        let mut out = Vec::new();
        spec(&[1, 2, 2, 3], ElementType::U8, &InputOverrides::default())
            .fill_u8(&image, stride, &mut out)
            .unwrap();
        assert_eq!(out, [0, 100, 200, 1, 101, 201, 10, 110, 210, 11, 111, 211]);
        spec(&[1, 3, 2, 2], ElementType::U8, &InputOverrides::default())
            .fill_u8(&image, stride, &mut out)
            .unwrap();
        assert_eq!(out, [0, 1, 10, 11, 100, 101, 110, 111, 200, 201, 210, 211]);
    }

    #[test]
    fn f32_fill_normalises_per_channel() {
        let (image, stride) = padded_image();
        let overrides = InputOverrides {
            mean: Some([0.0, 100.0, 200.0]),
            std: Some([1.0, 2.0, 4.0]),
            ..Default::default()
        };
        let mut out = Vec::new();
        spec(&[1, 3, 2, 2], ElementType::F32, &overrides)
            .fill_f32(&image, stride, &mut out)
            .unwrap();
        assert_eq!(
            out,
            [0.0, 1.0, 10.0, 11.0, 0.0, 0.5, 5.0, 5.5, 0.0, 0.25, 2.5, 2.75]
        );
    }

    #[test]
    fn short_images_are_an_error_not_a_panic() {
        let s = spec(&[1, 2, 2, 3], ElementType::U8, &InputOverrides::default());
        let mut out = Vec::new();
        assert!(s.fill_u8(&[0; 5], 6, &mut out).is_err());
        assert!(s.fill_u8(&[0; 12], 4, &mut out).is_err());
    }
}
