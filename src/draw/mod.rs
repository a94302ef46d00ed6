//! Drawing boxes and text into raw video planes of any 8-bit format, in place. No GStreamer types:
//! the caller describes where each colour component lives (plane, offset, pixel stride,
//! subsampling), which covers planar, semi-planar and packed YUV, RGB with or without alpha, and grey.

mod text;

pub use text::{Mask, TextRenderer};

/// Where one colour component lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    pub plane: usize,
    /// Byte offset of the component within a pixel group.
    pub offset: usize,
    /// Bytes from one sample of this component to the next along a row.
    pub pixel_stride: usize,
    /// Horizontal and vertical subsampling as shifts (I420 chroma: 1 and 1).
    pub w_sub: u32,
    pub h_sub: u32,
}

/// How a colour is written: as R, G, B or as Y, U, V (and grey as Y alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorModel {
    Rgb,
    /// BT.601 limited range.
    YuvBt601,
    /// BT.709 limited range.
    YuvBt709,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Rgb {
    pub const WHITE: Rgb = Rgb {
        r: 255,
        g: 255,
        b: 255,
    };
    pub const BLACK: Rgb = Rgb { r: 0, g: 0, b: 0 };

    /// Relative luminance 0..255 (BT.709 weights), to pick readable text on a fill.
    pub fn luminance(self) -> u8 {
        ((self.r as u32 * 2126 + self.g as u32 * 7152 + self.b as u32 * 722) / 10_000) as u8
    }

    /// Black or white, whichever reads better on this colour.
    pub fn contrasting(self) -> Rgb {
        if self.luminance() > 140 {
            Rgb::BLACK
        } else {
            Rgb::WHITE
        }
    }

    /// The same hue, darker: how stale boxes are drawn.
    pub fn dimmed(self) -> Rgb {
        Rgb {
            r: self.r / 2,
            g: self.g / 2,
            b: self.b / 2,
        }
    }

    /// Component values in `model` order (R,G,B or Y,U,V).
    pub fn components(self, model: ColorModel) -> [u8; 3] {
        let (r, g, b) = (self.r as f32, self.g as f32, self.b as f32);
        let (kr, kb) = match model {
            ColorModel::Rgb => return [self.r, self.g, self.b],
            ColorModel::YuvBt601 => (0.299, 0.114),
            ColorModel::YuvBt709 => (0.2126, 0.0722),
        };
        let y = kr * r + (1.0 - kr - kb) * g + kb * b;
        let u = (b - y) / (2.0 * (1.0 - kb));
        let v = (r - y) / (2.0 * (1.0 - kr));
        let limited = |value: f32, scale: f32, offset: f32| {
            (offset + value * scale / 255.0).round().clamp(0.0, 255.0) as u8
        };
        [
            limited(y, 219.0, 16.0),
            limited(u, 224.0, 128.0),
            limited(v, 224.0, 128.0),
        ]
    }
}

/// A distinct colour per class, stable across runs and frames (chosen by the label's name).
pub fn class_color(label: &str) -> Rgb {
    const PALETTE: [Rgb; 16] = [
        Rgb { r: 230, g: 25, b: 75 },
        Rgb { r: 60, g: 180, b: 75 },
        Rgb {
            r: 255,
            g: 225,
            b: 25,
        },
        Rgb { r: 0, g: 130, b: 200 },
        Rgb {
            r: 245,
            g: 130,
            b: 48,
        },
        Rgb {
            r: 145,
            g: 30,
            b: 180,
        },
        Rgb {
            r: 70,
            g: 240,
            b: 240,
        },
        Rgb {
            r: 240,
            g: 50,
            b: 230,
        },
        Rgb {
            r: 210,
            g: 245,
            b: 60,
        },
        Rgb {
            r: 250,
            g: 190,
            b: 212,
        },
        Rgb { r: 0, g: 128, b: 128 },
        Rgb {
            r: 220,
            g: 190,
            b: 255,
        },
        Rgb {
            r: 170,
            g: 110,
            b: 40,
        },
        Rgb {
            r: 255,
            g: 250,
            b: 200,
        },
        Rgb { r: 128, g: 0, b: 0 },
        Rgb {
            r: 170,
            g: 255,
            b: 195,
        },
    ];
    // FNV-1a: tiny, and the same on every platform and run.
    let hash = label
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
    PALETTE[hash as usize % PALETTE.len()]
}

/// A rectangle in pixels, clipped to the frame by the drawing calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

impl Rect {
    /// A rectangle given in pixels as (x, y, width, height), as ROI metas hold it.
    pub fn from_pixels((x, y, w, h): (u32, u32, u32, u32)) -> Rect {
        Rect {
            x: x as i64,
            y: y as i64,
            w: w as i64,
            h: h as i64,
        }
    }

    fn clip(self, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
        let x0 = self.x.max(0);
        let y0 = self.y.max(0);
        let x1 = (self.x + self.w).min(width as i64);
        let y1 = (self.y + self.h).min(height as i64);
        (x1 > x0 && y1 > y0).then_some((x0 as u32, y0 as u32, x1 as u32, y1 as u32))
    }
}

/// A frame to draw on. Planes are borrowed mutably from the mapped video frame.
pub struct Canvas<'a> {
    pub planes: Vec<&'a mut [u8]>,
    pub strides: Vec<usize>,
    /// Colour components in `model` order (R,G,B or Y,U,V; grey has only Y).
    pub components: Vec<Component>,
    /// An alpha component, set opaque where something is drawn.
    pub alpha: Option<Component>,
    pub model: ColorModel,
    pub width: u32,
    pub height: u32,
}

impl Canvas<'_> {
    fn put(&mut self, component: Component, x: u32, y: u32, value: u8, coverage: u8) {
        let index = component.offset
            + (x >> component.w_sub) as usize * component.pixel_stride
            + (y >> component.h_sub) as usize * self.strides[component.plane];
        if let Some(byte) = self.planes[component.plane].get_mut(index) {
            *byte = if coverage == 255 {
                value
            } else {
                let a = coverage as u32;
                ((*byte as u32 * (255 - a) + value as u32 * a + 127) / 255) as u8
            };
        }
    }

    /// Each component with the value `color` gives it (alpha: opaque).
    fn targets(&self, color: Rgb) -> Vec<(Component, u8)> {
        let values = color.components(self.model);
        self.components
            .iter()
            .zip(values)
            .map(|(c, v)| (*c, v))
            .chain(self.alpha.map(|a| (a, 255)))
            .collect()
    }

    /// Fills `rect` (clipped to the frame) with `color`. Subsampled components are written once per
    /// sample whose area the rectangle touches.
    pub fn fill_rect(&mut self, rect: Rect, color: Rgb) {
        let Some((x0, y0, x1, y1)) = rect.clip(self.width, self.height) else {
            return;
        };
        for (component, value) in self.targets(color) {
            let (xs, ys) = (1u32 << component.w_sub, 1u32 << component.h_sub);
            let mut y = y0 - y0 % ys;
            while y < y1 {
                let mut x = x0 - x0 % xs;
                while x < x1 {
                    self.put(component, x, y, value, 255);
                    x += xs;
                }
                y += ys;
            }
        }
    }

    /// Draws the outline of `rect` with lines `width` pixels thick, inside the rectangle. Dashed
    /// outlines (stale results) leave gaps of `dash` pixels every `dash` pixels.
    pub fn stroke_rect(&mut self, rect: Rect, width: u32, color: Rgb, dash: Option<u32>) {
        let t = (width as i64).min(rect.w.max(1)).min(rect.h.max(1)).max(1);
        let horizontal = |y: i64| Rect {
            x: rect.x,
            y,
            w: rect.w,
            h: t,
        };
        let vertical = |x: i64| Rect {
            x,
            y: rect.y,
            w: t,
            h: rect.h,
        };
        let edges = [
            horizontal(rect.y),
            horizontal(rect.y + rect.h - t),
            vertical(rect.x),
            vertical(rect.x + rect.w - t),
        ];
        for edge in edges {
            match dash {
                None => self.fill_rect(edge, color),
                Some(dash) => {
                    let dash = dash.max(1) as i64;
                    let along_x = edge.w > edge.h;
                    let length = if along_x { edge.w } else { edge.h };
                    let mut start = 0;
                    while start < length {
                        let piece = dash.min(length - start);
                        let segment = if along_x {
                            Rect {
                                x: edge.x + start,
                                w: piece,
                                ..edge
                            }
                        } else {
                            Rect {
                                y: edge.y + start,
                                h: piece,
                                ..edge
                            }
                        };
                        self.fill_rect(segment, color);
                        start += 2 * dash;
                    }
                }
            }
        }
    }

    /// Pixelates `rect` (clipped to the frame): every `block` x `block` cell takes the mean of its
    /// pixels, in each component plane (subsampled planes use proportionally smaller cells). With
    /// `ellipse`, only the pixels inside the ellipse inscribed in `rect` change. Alpha is kept.
    pub fn pixelate(&mut self, rect: Rect, block: u32, ellipse: bool) {
        let Some((x0, y0, x1, y1)) = rect.clip(self.width, self.height) else {
            return;
        };
        let block = block.max(1);
        // The ellipse is that of the unclipped rectangle, tested at pixel centres.
        let (cx, cy) = (
            rect.x as f64 + rect.w as f64 / 2.0,
            rect.y as f64 + rect.h as f64 / 2.0,
        );
        let (rx, ry) = ((rect.w as f64 / 2.0).max(0.5), (rect.h as f64 / 2.0).max(0.5));
        let inside = |x: u32, y: u32| {
            !ellipse || {
                let dx = (x as f64 + 0.5 - cx) / rx;
                let dy = (y as f64 + 0.5 - cy) / ry;
                dx * dx + dy * dy <= 1.0
            }
        };
        for component in self.components.clone() {
            let (xs, ys) = (1u32 << component.w_sub, 1u32 << component.h_sub);
            // Cells are aligned to the subsampling grid so each sample belongs to one cell.
            let (cell_w, cell_h) = (block.max(xs), block.max(ys));
            let mut by = y0 - y0 % ys;
            while by < y1 {
                let mut bx = x0 - x0 % xs;
                while bx < x1 {
                    let samples: Vec<(u32, u32)> = (by..(by + cell_h).min(y1))
                        .step_by(ys as usize)
                        .flat_map(|y| {
                            (bx..(bx + cell_w).min(x1))
                                .step_by(xs as usize)
                                .map(move |x| (x, y))
                        })
                        .collect();
                    let sum: u32 = samples
                        .iter()
                        .map(|&(x, y)| self.get(component, x, y) as u32)
                        .sum();
                    let mean = (sum + samples.len() as u32 / 2) / samples.len().max(1) as u32;
                    for &(x, y) in &samples {
                        if inside(x, y) {
                            self.put(component, x, y, mean as u8, 255);
                        }
                    }
                    bx += cell_w;
                }
                by += cell_h;
            }
        }
    }

    fn get(&self, component: Component, x: u32, y: u32) -> u8 {
        let index = component.offset
            + (x >> component.w_sub) as usize * component.pixel_stride
            + (y >> component.h_sub) as usize * self.strides[component.plane];
        self.planes[component.plane].get(index).copied().unwrap_or(0)
    }

    /// Draws a straight line from `a` to `b` (pixels), `width` pixels thick: a square of that size
    /// stamped at every pixel step along it.
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), width: u32, color: Rgb) {
        let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
        let half = (width.max(1) / 2) as i64;
        let size = width.max(1) as i64;
        for step in 0..=steps {
            let t = step as f64 / steps as f64;
            let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
            self.fill_rect(
                Rect {
                    x: x.round() as i64 - half,
                    y: y.round() as i64 - half,
                    w: size,
                    h: size,
                },
                color,
            );
        }
    }

    /// A text in a filled tab of `color` whose top-left corner is at (`x`, `y`), kept inside the
    /// frame; the text in black or white, whichever contrasts.
    pub fn tab(
        &mut self,
        text: &mut TextRenderer,
        (x, y): (i64, i64),
        label: &str,
        font_size: u32,
        color: Rgb,
    ) {
        let mask = text.render(label, font_size);
        let padding = (font_size / 6).max(1);
        let (tab_w, tab_h) = (mask.width + 2 * padding, mask.height + 2 * padding);
        let x = x.clamp(0, (self.width as i64 - tab_w as i64).max(0));
        let y = y.clamp(0, (self.height as i64 - tab_h as i64).max(0));
        self.fill_rect(
            Rect {
                x,
                y,
                w: tab_w as i64,
                h: tab_h as i64,
            },
            color,
        );
        self.blend_mask(x + padding as i64, y + padding as i64, mask, color.contrasting());
    }

    /// Blends `color` through a coverage mask whose top-left corner goes at (`x`, `y`).
    /// Subsampled components take the mean coverage of the pixels they stand for.
    pub fn blend_mask(&mut self, x: i64, y: i64, mask: &Mask, color: Rgb) {
        let rect = Rect {
            x,
            y,
            w: mask.width as i64,
            h: mask.height as i64,
        };
        let Some((x0, y0, x1, y1)) = rect.clip(self.width, self.height) else {
            return;
        };
        let coverage_at = |px: u32, py: u32| -> u32 {
            let (mx, my) = (px as i64 - x, py as i64 - y);
            if mx < 0 || my < 0 || mx >= mask.width as i64 || my >= mask.height as i64 {
                0
            } else {
                mask.coverage[my as usize * mask.width as usize + mx as usize] as u32
            }
        };
        for (component, value) in self.targets(color) {
            let (xs, ys) = (1u32 << component.w_sub, 1u32 << component.h_sub);
            let mut sy = y0 - y0 % ys;
            while sy < y1 {
                let mut sx = x0 - x0 % xs;
                while sx < x1 {
                    let mut total = 0;
                    for dy in 0..ys {
                        for dx in 0..xs {
                            total += coverage_at(sx + dx, sy + dy);
                        }
                    }
                    let coverage = (total / (xs * ys)) as u8;
                    if coverage > 0 {
                        self.put(component, sx, sy, value, coverage);
                    }
                    sx += xs;
                }
                sy += ys;
            }
        }
    }
}

/// One object to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub rect: Rect,
    pub label: String,
    pub color: Rgb,
    pub stale: bool,
}

/// Where a label of `text_w` x `text_h` goes for a box: just above it, or inside its top edge when
/// there is no room above; kept inside the frame horizontally.
pub fn label_position(rect: Rect, text_w: u32, text_h: u32, frame_width: u32) -> (i64, i64) {
    let y = if rect.y >= text_h as i64 {
        rect.y - text_h as i64
    } else {
        rect.y.max(0)
    };
    let x = rect.x.clamp(0, (frame_width as i64 - text_w as i64).max(0));
    (x, y)
}

/// Draws annotations: the box, then a filled label tab in the class colour with the text in black
/// or white, whichever contrasts (so it reads on any background).
pub fn draw_annotations(
    canvas: &mut Canvas<'_>,
    text: &mut TextRenderer,
    annotations: &[Annotation],
    line_width: u32,
    font_size: u32,
) {
    for a in annotations {
        let color = if a.stale { a.color.dimmed() } else { a.color };
        let dash = a.stale.then_some(line_width.max(2) * 3);
        canvas.stroke_rect(a.rect, line_width, color, dash);
        if a.label.is_empty() {
            continue;
        }
        let (text_w, text_h) = text.size(&a.label, font_size);
        let padding = (font_size / 6).max(1);
        let position = label_position(a.rect, text_w + 2 * padding, text_h + 2 * padding, canvas.width);
        canvas.tab(text, position, &a.label, font_size, color);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-plane I420-like canvas over owned buffers.
    struct Frame {
        planes: Vec<Vec<u8>>,
        strides: Vec<usize>,
    }

    impl Frame {
        fn i420(width: usize, height: usize) -> Frame {
            let cw = width.div_ceil(2);
            let ch = height.div_ceil(2);
            Frame {
                planes: vec![vec![100; width * height], vec![128; cw * ch], vec![128; cw * ch]],
                strides: vec![width, cw, cw],
            }
        }

        fn canvas(&mut self, width: u32, height: u32) -> Canvas<'_> {
            let plane = |p| Component {
                plane: p,
                offset: 0,
                pixel_stride: 1,
                w_sub: u32::from(p > 0),
                h_sub: u32::from(p > 0),
            };
            Canvas {
                planes: self.planes.iter_mut().map(|p| p.as_mut_slice()).collect(),
                strides: self.strides.clone(),
                components: vec![plane(0), plane(1), plane(2)],
                alpha: None,
                model: ColorModel::YuvBt601,
                width,
                height,
            }
        }
    }

    #[test]
    fn pixelation_averages_cells_and_stays_in_its_rectangle() {
        let mut frame = Frame::i420(16, 8);
        for (i, v) in frame.planes[0].iter_mut().enumerate() {
            *v = (i * 7 % 251) as u8;
        }
        let before = frame.planes[0].clone();
        let mut canvas = frame.canvas(16, 8);
        canvas.pixelate(
            Rect {
                x: 4,
                y: 2,
                w: 8,
                h: 4,
            },
            4,
            false,
        );
        drop(canvas);
        let luma = &frame.planes[0];
        for y in 0..8 {
            for x in 0..16 {
                let i = y * 16 + x;
                if (4..12).contains(&x) && (2..6).contains(&y) {
                    // Each 4x4 cell holds one value, the rounded mean of what was there.
                    let (cx, cy) = (4 + (x - 4) / 4 * 4, 2);
                    let before = &before;
                    let cell: Vec<u32> = (cy..cy + 4)
                        .flat_map(|yy| (cx..cx + 4).map(move |xx| before[yy * 16 + xx] as u32))
                        .collect();
                    let mean = (cell.iter().sum::<u32>() + 8) / 16;
                    assert_eq!(luma[i] as u32, mean, "({x},{y})");
                } else {
                    assert_eq!(luma[i], before[i], "({x},{y}) outside changed");
                }
            }
        }
    }

    #[test]
    fn yuv_of_primaries() {
        assert_eq!(Rgb::WHITE.components(ColorModel::YuvBt601), [235, 128, 128]);
        assert_eq!(Rgb::BLACK.components(ColorModel::YuvBt709), [16, 128, 128]);
        let red = Rgb { r: 255, g: 0, b: 0 }.components(ColorModel::YuvBt601);
        assert_eq!(red, [81, 90, 240]);
    }

    #[test]
    fn outline_touches_exactly_its_pixels() {
        let mut frame = Frame::i420(20, 10);
        let mut canvas = frame.canvas(20, 10);
        canvas.stroke_rect(
            Rect {
                x: 2,
                y: 3,
                w: 6,
                h: 4,
            },
            1,
            Rgb::WHITE,
            None,
        );
        drop(canvas);
        let luma = &frame.planes[0];
        for y in 0..10 {
            for x in 0..20 {
                let on_outline =
                    (2..8).contains(&x) && (3..7).contains(&y) && (x == 2 || x == 7 || y == 3 || y == 6);
                assert_eq!(luma[y * 20 + x] == 235, on_outline, "({x},{y})");
            }
        }
    }

    #[test]
    fn drawing_clips_to_the_frame() {
        let mut frame = Frame::i420(7, 5);
        let mut canvas = frame.canvas(7, 5);
        canvas.fill_rect(
            Rect {
                x: -10,
                y: -10,
                w: 100,
                h: 100,
            },
            Rgb::WHITE,
        );
        canvas.stroke_rect(
            Rect {
                x: 5,
                y: 4,
                w: 50,
                h: 50,
            },
            3,
            Rgb::BLACK,
            Some(2),
        );
        canvas.fill_rect(
            Rect {
                x: 9,
                y: 9,
                w: 2,
                h: 2,
            },
            Rgb::BLACK,
        );
        drop(canvas);
        assert!(frame.planes[0][..7 * 4].iter().all(|&v| v == 235));
    }

    #[test]
    fn dashes_leave_gaps() {
        let mut frame = Frame::i420(40, 4);
        let mut canvas = frame.canvas(40, 4);
        canvas.stroke_rect(
            Rect {
                x: 0,
                y: 0,
                w: 40,
                h: 4,
            },
            1,
            Rgb::WHITE,
            Some(5),
        );
        drop(canvas);
        let top: Vec<bool> = frame.planes[0][..40].iter().map(|&v| v == 235).collect();
        assert!(top[..5].iter().all(|&d| d) && top[5..10].iter().all(|&d| !d) && top[10]);
    }

    #[test]
    fn colours_are_stable_and_text_contrasts() {
        assert_eq!(class_color("person"), class_color("person"));
        assert_ne!(class_color("person"), class_color("car"));
        assert_eq!(
            Rgb {
                r: 255,
                g: 225,
                b: 25
            }
            .contrasting(),
            Rgb::BLACK
        );
        assert_eq!(Rgb { r: 0, g: 0, b: 128 }.contrasting(), Rgb::WHITE);
    }

    #[test]
    fn labels_sit_above_or_inside_and_stay_in_frame() {
        let r = Rect {
            x: 50,
            y: 40,
            w: 10,
            h: 10,
        };
        assert_eq!(label_position(r, 30, 12, 100), (50, 28));
        assert_eq!(label_position(Rect { y: 5, ..r }, 30, 12, 100), (50, 5));
        assert_eq!(label_position(Rect { x: 90, ..r }, 30, 12, 100), (70, 28));
    }

    #[test]
    fn text_blends_only_inside_its_mask() {
        let mut renderer = TextRenderer::new();
        let mask = renderer.render("person 87%", 16).clone();
        assert!(
            mask.width > 40 && mask.height >= 12,
            "{}x{}",
            mask.width,
            mask.height
        );
        let mut frame = Frame::i420(200, 40);
        let mut canvas = frame.canvas(200, 40);
        canvas.blend_mask(10, 5, &mask, Rgb::WHITE);
        drop(canvas);
        let luma = &frame.planes[0];
        let changed: Vec<(usize, usize)> = (0..40)
            .flat_map(|y| (0..200).map(move |x| (x, y)))
            .filter(|&(x, y)| luma[y * 200 + x] != 100)
            .collect();
        assert!(!changed.is_empty());
        assert!(changed.iter().all(|&(x, y)| x >= 10
            && x < 10 + mask.width as usize
            && y >= 5
            && y < 5 + mask.height as usize));
    }
}
