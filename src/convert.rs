//! Colour conversion and scaling of a video frame to the model's input size with GStreamer's own
//! `VideoConverter`. Runs on the inference thread's preparer, never on the streaming thread.

use gst_video::prelude::*;

use crate::colour::YuvToRgb;
use crate::geometry::{PixelRect, Placement};
use crate::preprocess::ChannelOrder;

/// The grey YOLO's letterbox is trained with (114, 114, 114): one channel's value.
const LETTERBOX_LEVEL: u8 = 114;
/// The same grey as ARGB, for GStreamer's converter.
const LETTERBOX_GREY: u32 =
    0xff00_0000 | u32::from_be_bytes([0, LETTERBOX_LEVEL, LETTERBOX_LEVEL, LETTERBOX_LEVEL]);

/// A converted frame: packed 3-channel pixels in the model's channel order.
pub type ConvertedFrame = gst_video::VideoFrame<gst_video::video_frame::Readable>;

/// Layouts that are first shrunk to the model's size in a layout of the same family, then converted
/// to the model's colours. In one pass the converter unpacks every source pixel to 4:4:4 before
/// scaling; shrinking first converts only the model's pixels. Measured, 1080p to 300x300 RGB:
/// I420 1.18 ms in one pass against 0.28 ms in two, NV12 0.89 against 0.30, BGR 0.75 against
/// 0.35 (the other RGB layouts are as fast in one pass). YUV is shrunk to 4:4:4 so the colours
/// keep the resolution a single pass gives them.
fn shrunk_format(format: gst_video::VideoFormat) -> Option<gst_video::VideoFormat> {
    use gst_video::VideoFormat::*;
    match format {
        I420 | Yv12 | Y42b | Y444 => Some(Y444),
        // Semi-planar to semi-planar: NV12 to Y444 takes the converter's slow path (0.9 ms).
        Nv12 | Nv21 => Some(Nv24),
        Bgr => Some(Bgr),
        _ => None,
    }
}

/// The second pass: the shrunk frame's colours, placed in the model input with the letterbox's
/// border.
enum ColourPass {
    /// Y444 and NV24 with a standard matrix, by hand (`crate::colour`): faster and closer to
    /// the picture than GStreamer's 8-bit path.
    ByHand(YuvToRgb),
    Converter(gst_video::VideoConverter),
}

/// How frames of one format and placement are converted.
struct Conversion {
    input: (gst_video::VideoInfo, Placement),
    /// Scales (and crops, places, fills the border); converts the colours too when one pass.
    scale: gst_video::VideoConverter,
    /// Two passes: the shrunk frame (buffer reused) and its colour conversion into place.
    shrunk: Option<(gst_video::VideoInfo, Option<gst::Buffer>, ColourPass)>,
    output: gst_video::VideoInfo,
}

/// The matrix of a 4:4:4 layout the colour pass handles by hand, if `info` is one with a
/// standard matrix and a known range.
fn by_hand(info: &gst_video::VideoInfo) -> Option<YuvToRgb> {
    use gst_video::VideoColorRange::*;
    if !matches!(
        info.format(),
        gst_video::VideoFormat::Y444 | gst_video::VideoFormat::Nv24
    ) {
        return None;
    }
    let colorimetry = info.colorimetry();
    let full_range = match colorimetry.range() {
        Range0_255 => true,
        Range16_235 => false,
        _ => return None,
    };
    let (kr, kb) = colorimetry.matrix().kr_kb().ok()?;
    YuvToRgb::new(kr, kb, full_range)
}

/// Converts frames to the model's packed RGB/BGR input, keeping the converters while the input
/// format stays the same (building one costs far more than using it).
pub struct FrameConverter {
    conversion: Option<Conversion>,
    /// Off only to compare with the single pass in tests.
    two_passes_allowed: bool,
    /// Off only to compare with GStreamer's colour pass in tests.
    colours_by_hand_allowed: bool,
    channel_order: ChannelOrder,
    width: u32,
    height: u32,
}

/// The converter settings every pass uses. Plain 2-tap bilinear, as TensorFlow's resize_bilinear
/// that detectors are trained with: measured 3x cheaper than the default filter, whose taps grow
/// with the downscale factor (1080p I420 to 300x300: 1.2 ms against 3.9 ms). One thread keeps the
/// cores for ONNX Runtime and the video.
fn converter_config() -> gst_video::VideoConverterConfig {
    let mut config = gst_video::VideoConverterConfig::new();
    config.set_resampler_method(gst_video::VideoResamplerMethod::Linear);
    config.set_resampler_taps(2);
    config.set_chroma_resampler_method(gst_video::VideoResamplerMethod::Linear);
    config.set_dither_method(gst_video::VideoDitherMethod::None);
    config.set_threads(1);
    config
}

/// A frame of `format` and size; one of the source's colour family keeps its colorimetry, so the
/// colour conversion of a second pass is the one a single pass would do.
fn describe(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    like: &gst_video::VideoInfo,
) -> Result<gst_video::VideoInfo, String> {
    let builder = gst_video::VideoInfo::builder(format, width, height)
        .fps(like.fps())
        .interlace_mode(like.interlace_mode());
    let same_family = gst_video::VideoFormatInfo::from_format(format).is_yuv() == like.format_info().is_yuv();
    let builder = if same_family {
        builder.colorimetry(&like.colorimetry())
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| format!("cannot describe the model input: {e}"))
}

impl FrameConverter {
    pub fn new(channel_order: ChannelOrder, width: u32, height: u32) -> Self {
        FrameConverter {
            conversion: None,
            two_passes_allowed: true,
            colours_by_hand_allowed: true,
            channel_order,
            width,
            height,
        }
    }

    fn build(&self, info: &gst_video::VideoInfo, placement: &Placement) -> Result<Conversion, String> {
        let out_format = match self.channel_order {
            ChannelOrder::Rgb => gst_video::VideoFormat::Rgb,
            ChannelOrder::Bgr => gst_video::VideoFormat::Bgr,
        };
        let output = describe(out_format, self.width, self.height, info)?;
        let (source, destination) = (placement.source, placement.destination);
        let shrinking = u64::from(destination.width) * u64::from(destination.height)
            < u64::from(source.width) * u64::from(source.height);
        let shrunk_format = shrunk_format(info.format()).filter(|_| self.two_passes_allowed && shrinking);
        let cannot =
            |e: gst::glib::BoolError| format!("cannot convert {:?} to the model input: {e}", info.format());
        // The pass that places the picture in the model input, with the letterbox's border.
        let place = |config: &mut gst_video::VideoConverterConfig| {
            config.set_dest_x(destination.x as i32);
            config.set_dest_y(destination.y as i32);
            config.set_dest_width(Some(destination.width as i32));
            config.set_dest_height(Some(destination.height as i32));
            config.set_fill_border(!placement.fills_input());
            config.set_border_argb(LETTERBOX_GREY);
        };
        let mut scaling = converter_config();
        scaling.set_src_x(source.x as i32);
        scaling.set_src_y(source.y as i32);
        scaling.set_src_width(Some(source.width as i32));
        scaling.set_src_height(Some(source.height as i32));
        let (scale, shrunk) = match shrunk_format {
            None => {
                // One pass: crop, scale, convert and place.
                place(&mut scaling);
                let scale = gst_video::VideoConverter::new(info, &output, Some(scaling)).map_err(cannot)?;
                (scale, None)
            }
            Some(format) => {
                let shrunk = describe(format, destination.width, destination.height, info)?;
                let scale = gst_video::VideoConverter::new(info, &shrunk, Some(scaling)).map_err(cannot)?;
                let colours = match by_hand(&shrunk).filter(|_| self.colours_by_hand_allowed) {
                    Some(matrix) => ColourPass::ByHand(matrix),
                    None => {
                        let mut placing = converter_config();
                        place(&mut placing);
                        ColourPass::Converter(
                            gst_video::VideoConverter::new(&shrunk, &output, Some(placing))
                                .map_err(cannot)?,
                        )
                    }
                };
                let buffer = gst::Buffer::with_size(shrunk.size()).map_err(|e| e.to_string())?;
                (scale, Some((shrunk, Some(buffer), colours)))
            }
        };
        Ok(Conversion {
            input: (info.clone(), *placement),
            scale,
            shrunk,
            output,
        })
    }

    /// Converts `buffer` (a frame described by `info`, with any strides its `GstVideoMeta` gives),
    /// the part and position `placement` gives, and releases it as soon as it is read. Returns the
    /// converted frame and its row stride.
    pub fn convert(
        &mut self,
        buffer: gst::Buffer,
        info: &gst_video::VideoInfo,
        placement: &Placement,
    ) -> Result<(ConvertedFrame, usize), String> {
        if self
            .conversion
            .as_ref()
            .is_none_or(|c| c.input.0 != *info || c.input.1 != *placement)
        {
            self.conversion = Some(self.build(info, placement)?);
        }
        let Some(conversion) = self.conversion.as_mut() else {
            return Err("no converter".into());
        };
        let frame = gst_video::VideoFrame::from_buffer_readable(buffer, info).map_err(|buffer| {
            format!(
                "buffer of {} bytes does not hold a {}x{} {:?} frame",
                buffer.size(),
                info.width(),
                info.height(),
                info.format()
            )
        })?;
        let out_buffer = gst::Buffer::with_size(conversion.output.size()).map_err(|e| e.to_string())?;
        let mut out_frame = gst_video::VideoFrame::from_buffer_writable(out_buffer, &conversion.output)
            .map_err(|_| "cannot map the conversion buffer".to_string())?;
        match conversion.shrunk.as_mut() {
            None => {
                conversion.scale.frame(&frame, &mut out_frame);
                // Release the input frame now: downstream may want to write to it.
                drop(frame);
            }
            Some((scaled_info, scaled_buffer, colours)) => {
                let buffer = match scaled_buffer.take() {
                    Some(buffer) => buffer,
                    None => gst::Buffer::with_size(scaled_info.size()).map_err(|e| e.to_string())?,
                };
                let mut scaled = gst_video::VideoFrame::from_buffer_writable(buffer, scaled_info)
                    .map_err(|_| "cannot map the scaling buffer".to_string())?;
                conversion.scale.frame(&frame, &mut scaled);
                drop(frame);
                match colours {
                    ColourPass::Converter(colours) => colours.frame(&scaled, &mut out_frame),
                    ColourPass::ByHand(matrix) => place_by_hand(
                        matrix,
                        &scaled,
                        &mut out_frame,
                        placement.destination,
                        self.channel_order,
                    )?,
                }
                *scaled_buffer = Some(scaled.into_buffer());
            }
        }
        let stride = out_frame.plane_stride()[0] as usize;
        let out_frame =
            gst_video::VideoFrame::from_buffer_readable(out_frame.into_buffer(), &conversion.output)
                .map_err(|_| "cannot map the converted frame".to_string())?;
        Ok((out_frame, stride))
    }
}

/// Converts a shrunk Y444 or NV24 frame into `destination` of `out` (packed 3 bytes per pixel)
/// and fills the rest with the letterbox grey.
fn place_by_hand(
    matrix: &YuvToRgb,
    shrunk: &gst_video::VideoFrame<gst_video::video_frame::Writable>,
    out: &mut gst_video::VideoFrame<gst_video::video_frame::Writable>,
    destination: PixelRect,
    order: ChannelOrder,
) -> Result<(), String> {
    let unreadable = |e: gst::glib::BoolError| format!("cannot read the shrunk frame: {e}");
    let interleaved = shrunk.format() == gst_video::VideoFormat::Nv24;
    let strides = shrunk.plane_stride();
    let row_start = |plane: usize, row: usize| row * strides[plane] as usize;
    let luma = shrunk.plane_data(0).map_err(unreadable)?;
    let first_chroma = shrunk.plane_data(1).map_err(unreadable)?;
    let second_chroma = if interleaved {
        &[][..]
    } else {
        shrunk.plane_data(2).map_err(unreadable)?
    };
    let out_stride = out.plane_stride()[0] as usize;
    let out_width = out.width() as usize * 3;
    let data = out
        .plane_data_mut(0)
        .map_err(|e| format!("cannot write the model input: {e}"))?;
    let (x, y) = (destination.x as usize, destination.y as usize);
    let (width, height) = (destination.width as usize, destination.height as usize);
    let short = || "the shrunk frame is smaller than its placement".to_string();
    for (row, out_row) in data.chunks_mut(out_stride).enumerate() {
        let out_row = out_row.get_mut(..out_width).ok_or_else(short)?;
        let Some(source_row) = row.checked_sub(y).filter(|r| *r < height) else {
            out_row.fill(LETTERBOX_LEVEL);
            continue;
        };
        let (left, rest) = out_row.split_at_mut(x * 3);
        let (picture, right) = rest.split_at_mut(width * 3);
        left.fill(LETTERBOX_LEVEL);
        right.fill(LETTERBOX_LEVEL);
        let y_row = luma.get(row_start(0, source_row)..).ok_or_else(short)?;
        let y_row = y_row.get(..width).ok_or_else(short)?;
        if interleaved {
            let uv = first_chroma.get(row_start(1, source_row)..).ok_or_else(short)?;
            matrix.interleaved_row(y_row, uv.get(..width * 2).ok_or_else(short)?, picture, order);
        } else {
            let u = first_chroma.get(row_start(1, source_row)..).ok_or_else(short)?;
            let v = second_chroma.get(row_start(2, source_row)..).ok_or_else(short)?;
            matrix.planar_row(
                y_row,
                u.get(..width).ok_or_else(short)?,
                v.get(..width).ok_or_else(short)?,
                picture,
                order,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Fit;

    /// A frame with smooth gradients, hard edges and colour, as a test card has.
    fn test_card(
        format: gst_video::VideoFormat,
        width: u32,
        height: u32,
    ) -> (gst::Buffer, gst_video::VideoInfo) {
        test_card_in(format, width, height, None)
    }

    /// A test card in the colorimetry named (as caps write it), or the format's default.
    fn test_card_in(
        format: gst_video::VideoFormat,
        width: u32,
        height: u32,
        colorimetry: Option<&str>,
    ) -> (gst::Buffer, gst_video::VideoInfo) {
        let (rgb, rgb_info) = rgb_test_card(width, height);
        let builder = gst_video::VideoInfo::builder(format, width, height);
        let colorimetry = colorimetry.map(|name| name.parse::<gst_video::VideoColorimetry>().unwrap());
        let info = match &colorimetry {
            Some(colorimetry) => builder.colorimetry(colorimetry).build(),
            None => builder.build(),
        }
        .unwrap();
        let converter = gst_video::VideoConverter::new(&rgb_info, &info, None).unwrap();
        let source = gst_video::VideoFrame::from_buffer_readable(rgb, &rgb_info).unwrap();
        let mut out =
            gst_video::VideoFrame::from_buffer_writable(gst::Buffer::with_size(info.size()).unwrap(), &info)
                .unwrap();
        converter.frame(&source, &mut out);
        (out.into_buffer(), info)
    }

    /// The test card's RGB original.
    fn rgb_test_card(width: u32, height: u32) -> (gst::Buffer, gst_video::VideoInfo) {
        let rgb_info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width, height)
            .build()
            .unwrap();
        let mut rgb = gst::Buffer::with_size(rgb_info.size()).unwrap();
        {
            let mut frame =
                gst_video::VideoFrameRef::from_buffer_ref_writable(rgb.get_mut().unwrap(), &rgb_info)
                    .unwrap();
            let stride = frame.plane_stride()[0] as usize;
            let data = frame.plane_data_mut(0).unwrap();
            for y in 0..height as usize {
                for x in 0..width as usize {
                    let pixel = &mut data[y * stride + x * 3..][..3];
                    let block = ((x / 40) + (y / 40)) % 2 == 0;
                    pixel[0] = (x * 255 / width as usize) as u8;
                    pixel[1] = if block { 220 } else { 30 };
                    pixel[2] = (y * 255 / height as usize) as u8;
                }
            }
        }
        (rgb, rgb_info)
    }

    fn pixels(
        converter: &mut FrameConverter,
        buffer: gst::Buffer,
        info: &gst_video::VideoInfo,
        fit: Fit,
    ) -> Vec<u8> {
        let placement = Placement::new(info.width(), info.height(), None, 300, 300, fit);
        let (frame, stride) = converter.convert(buffer, info, &placement).unwrap();
        let data = frame.plane_data(0).unwrap();
        (0..300)
            .flat_map(|y| data[y * stride..][..900].to_vec())
            .collect()
    }

    /// What every path approximates: the test card's RGB original, only shrunk (in RGB, to
    /// `order`), without any colour conversion.
    fn reference(info: &gst_video::VideoInfo, fit: Fit, order: ChannelOrder) -> Vec<u8> {
        let (rgb, rgb_info) = rgb_test_card(info.width(), info.height());
        pixels(&mut FrameConverter::new(order, 300, 300), rgb, &rgb_info, fit)
    }

    fn mean_difference(a: &[u8], b: &[u8]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn shrinking_first_is_as_faithful_as_one_pass() {
        gst::init().unwrap();
        use gst_video::VideoFormat::*;
        for format in [I420, Yv12, Nv12, Nv21, Y42b, Y444, Bgr] {
            for fit in [Fit::Stretch, Fit::Letterbox] {
                let (buffer, info) = test_card(format, 640, 480);
                let mut two = FrameConverter::new(ChannelOrder::Rgb, 300, 300);
                let mut one = FrameConverter::new(ChannelOrder::Rgb, 300, 300);
                one.two_passes_allowed = false;
                let shrunk_first = pixels(&mut two, buffer.clone(), &info, fit);
                let single = pixels(&mut one, buffer.clone(), &info, fit);
                assert!(two.conversion.as_ref().is_some_and(|c| c.shrunk.is_some()));
                assert!(one.conversion.as_ref().is_some_and(|c| c.shrunk.is_none()));
                let reference = reference(&info, fit, ChannelOrder::Rgb);
                let (two_error, one_error) = (
                    mean_difference(&shrunk_first, &reference),
                    mean_difference(&single, &reference),
                );
                assert!(
                    two_error <= one_error + 0.5 && two_error < 4.0,
                    "{format:?} {fit:?}: two passes {two_error:.2} levels from the reference, one pass {one_error:.2}"
                );
            }
        }
    }

    /// The colour pass written by hand gives the picture's colours at least as faithfully as
    /// GStreamer's colour pass, with the same border and placement.
    #[test]
    fn colours_by_hand_match_the_converter() {
        gst::init().unwrap();
        use gst_video::VideoFormat::*;
        let cases = [
            (I420, None),
            (Nv12, None),
            (Nv21, None),
            (Yv12, None),
            (Y42b, None),
            (Y444, None),
            (I420, Some("bt709")),
            (I420, Some("bt601")),
            (Nv12, Some("bt2020")),
            (I420, Some("1:4:0:0")),
        ];
        for (format, colorimetry) in cases {
            for fit in [Fit::Stretch, Fit::Letterbox] {
                for order in [ChannelOrder::Rgb, ChannelOrder::Bgr] {
                    let (buffer, info) = test_card_in(format, 640, 360, colorimetry);
                    let mut by_hand = FrameConverter::new(order, 300, 300);
                    let mut converter = FrameConverter::new(order, 300, 300);
                    converter.colours_by_hand_allowed = false;
                    let ours = pixels(&mut by_hand, buffer.clone(), &info, fit);
                    let theirs = pixels(&mut converter, buffer, &info, fit);
                    let pass = |c: &FrameConverter| {
                        c.conversion
                            .as_ref()
                            .and_then(|c| c.shrunk.as_ref())
                            .map(|(_, _, pass)| matches!(pass, ColourPass::ByHand(_)))
                    };
                    assert_eq!(pass(&by_hand), Some(true), "{format:?} {colorimetry:?}");
                    assert_eq!(pass(&converter), Some(false));
                    let original = reference(&info, fit, order);
                    let (our_error, their_error) = (
                        mean_difference(&ours, &original),
                        mean_difference(&theirs, &original),
                    );
                    assert!(
                        our_error <= their_error + 0.1 && our_error < 3.0,
                        "{format:?} {colorimetry:?} {fit:?} {order:?}: {our_error:.2} levels from the \
                         picture by hand, {their_error:.2} with GStreamer's colour pass"
                    );
                    // Border and placement: the same pixels are grey 114.
                    let grey = |p: &[u8]| p.iter().map(|v| *v == LETTERBOX_LEVEL).collect::<Vec<_>>();
                    if fit == Fit::Letterbox {
                        assert_eq!(grey(&ours[..900 * 60]), grey(&theirs[..900 * 60]));
                        assert_eq!(grey(&ours[900 * 240..]), grey(&theirs[900 * 240..]));
                    }
                }
            }
        }
    }

    #[test]
    fn enlarging_and_rgb_layouts_take_one_pass() {
        gst::init().unwrap();
        for (format, width, height) in [
            (gst_video::VideoFormat::I420, 200, 150),
            (gst_video::VideoFormat::Rgbx, 640, 480),
        ] {
            let (buffer, info) = test_card(format, width, height);
            let mut converter = FrameConverter::new(ChannelOrder::Rgb, 300, 300);
            pixels(&mut converter, buffer, &info, Fit::Stretch);
            assert!(converter.conversion.as_ref().is_some_and(|c| c.shrunk.is_none()));
        }
    }

    #[test]
    fn letterbox_border_is_yolo_grey_after_two_passes() {
        gst::init().unwrap();
        let (buffer, info) = test_card(gst_video::VideoFormat::I420, 640, 360);
        let mut converter = FrameConverter::new(ChannelOrder::Rgb, 300, 300);
        let picture = pixels(&mut converter, buffer, &info, Fit::Letterbox);
        // 640x360 fills 300x169 in the middle: rows 0..65 are border.
        for value in &picture[..60 * 900] {
            assert!(value.abs_diff(114) <= 2, "{value}");
        }
    }
}
