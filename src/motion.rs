//! Motion gating: a cheap test of whether the picture changed since the frame the model last saw,
//! on a small grey thumbnail, so a camera watching an empty scene does not run the model on every
//! frame. No GStreamer types.

/// Thumbnail side in cells: coarse enough to ignore sensor noise and compression flicker, fine
/// enough that a person a tenth of the frame tall covers several cells.
pub const THUMBNAIL_SIZE: usize = 48;
/// A cell counts as changed when its mean grey level moved by more than this (0-255 scale).
const CELL_DELTA: i16 = 10;

/// A `THUMBNAIL_SIZE` x `THUMBNAIL_SIZE` grey image: the mean of each cell of the picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail(Vec<u8>);

impl Thumbnail {
    /// From a packed 3-channel image (`stride` bytes per row). Samples every other pixel of every
    /// other row, which is plenty for cell means and keeps the cost near 0.05 ms for 640x640.
    pub fn from_packed_rgb(image: &[u8], width: usize, height: usize, stride: usize) -> Thumbnail {
        let n = THUMBNAIL_SIZE;
        let mut sums = vec![0u32; n * n];
        let mut counts = vec![0u32; n * n];
        if width == 0 || height == 0 {
            return Thumbnail(vec![0; n * n]);
        }
        for y in (0..height).step_by(2) {
            let Some(row) = image.get(y * stride..y * stride + width * 3) else {
                break;
            };
            let cell_row = y * n / height * n;
            for x in (0..width).step_by(2) {
                let p = &row[x * 3..x * 3 + 3];
                // Channel order does not matter for change detection: an equal-weight grey.
                let grey = (p[0] as u32 + p[1] as u32 * 2 + p[2] as u32) / 4;
                let cell = cell_row + x * n / width;
                sums[cell] += grey;
                counts[cell] += 1;
            }
        }
        Thumbnail(
            sums.iter()
                .zip(&counts)
                .map(|(&s, &c)| s.checked_div(c).unwrap_or(0) as u8)
                .collect(),
        )
    }

    /// The fraction (0..1) of cells whose grey level changed noticeably.
    pub fn changed_fraction(&self, other: &Thumbnail) -> f32 {
        let changed = self
            .0
            .iter()
            .zip(&other.0)
            .filter(|&(&a, &b)| (a as i16 - b as i16).abs() > CELL_DELTA)
            .count();
        changed as f32 / self.0.len().max(1) as f32
    }
}

/// Remembers the picture the model last ran on and says whether a new one differs enough.
#[derive(Debug, Clone, Default)]
pub struct MotionGate {
    reference: Option<Thumbnail>,
}

impl MotionGate {
    /// Whether to run the model on this picture: yes for the first, and whenever more than
    /// `threshold` of the picture changed since the last one it ran on (which then becomes the
    /// reference, so slow changes add up until they count).
    pub fn should_infer(&mut self, thumbnail: Thumbnail, threshold: f32) -> bool {
        let moved = self
            .reference
            .as_ref()
            .is_none_or(|reference| reference.changed_fraction(&thumbnail) > threshold);
        if moved {
            self.reference = Some(thumbnail);
        }
        moved
    }

    /// Forget the reference (after a flush, a new model or a new region the picture is another).
    pub fn reset(&mut self) {
        self.reference = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(width: usize, height: usize, square_at: Option<(usize, usize)>) -> Vec<u8> {
        let mut image = vec![90u8; width * height * 3];
        if let Some((sx, sy)) = square_at {
            for y in sy..(sy + height / 8).min(height) {
                for x in sx..(sx + width / 8).min(width) {
                    image[(y * width + x) * 3..(y * width + x) * 3 + 3].copy_from_slice(&[250, 250, 250]);
                }
            }
        }
        image
    }

    #[test]
    fn still_pictures_are_gated_and_moving_ones_are_not() {
        let (w, h) = (320, 240);
        let mut gate = MotionGate::default();
        let first = Thumbnail::from_packed_rgb(&picture(w, h, Some((10, 10))), w, h, w * 3);
        assert!(gate.should_infer(first, 0.005), "the first picture always runs");
        // Same picture with a little noise: no motion.
        let mut noisy = picture(w, h, Some((10, 10)));
        for (i, v) in noisy.iter_mut().enumerate() {
            *v = v.saturating_add((i % 5) as u8);
        }
        assert!(!gate.should_infer(Thumbnail::from_packed_rgb(&noisy, w, h, w * 3), 0.005));
        // The square moved: motion.
        let moved = Thumbnail::from_packed_rgb(&picture(w, h, Some((200, 150))), w, h, w * 3);
        assert!(gate.should_infer(moved, 0.005));
        gate.reset();
        let again = Thumbnail::from_packed_rgb(&picture(w, h, Some((200, 150))), w, h, w * 3);
        assert!(
            gate.should_infer(again, 0.005),
            "after a reset the next picture runs"
        );
    }

    #[test]
    fn changed_fraction_counts_cells() {
        let (w, h) = (96, 96);
        let a = Thumbnail::from_packed_rgb(&picture(w, h, None), w, h, w * 3);
        let b = Thumbnail::from_packed_rgb(&picture(w, h, Some((0, 0))), w, h, w * 3);
        // A square an eighth of each side covers 1/64 of the picture.
        let fraction = a.changed_fraction(&b);
        assert!((fraction - 1.0 / 64.0).abs() < 0.005, "{fraction}");
        assert_eq!(a.changed_fraction(&a), 0.0);
    }
}
