//! Text rasterised with `ab_glyph` from the DejaVu Sans Bold font embedded by the `dejavu` crate.

use std::collections::HashMap;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};

/// Coverage (0 = none, 255 = full) of a rendered string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub width: u32,
    pub height: u32,
    pub coverage: Vec<u8>,
}

/// Renders strings at pixel sizes, keeping what it rendered: labels repeat from frame to frame.
pub struct TextRenderer {
    font: FontRef<'static>,
    cache: HashMap<(String, u32), Mask>,
}

/// Enough for the label/confidence strings of the recent frames; cleared when exceeded. Masks of
/// 1080p labels are ~7 KiB, so this bounds the cache near 2 MiB (4096 entries measured ~22 MiB).
const CACHE_LIMIT: usize = 256;

impl Default for TextRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl TextRenderer {
    pub fn new() -> Self {
        TextRenderer {
            font: FontRef::try_from_slice(dejavu::sans::bold()).expect("the embedded DejaVu font parses"),
            cache: HashMap::new(),
        }
    }

    /// The width and height of `text`'s mask.
    pub fn size(&mut self, text: &str, size: u32) -> (u32, u32) {
        let mask = self.render(text, size);
        (mask.width, mask.height)
    }

    /// The mask of `text` with glyphs `size` pixels high.
    pub fn render(&mut self, text: &str, size: u32) -> &Mask {
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        let font = &self.font;
        self.cache
            .entry((text.to_string(), size))
            .or_insert_with(|| rasterise(font, text, size.max(4)))
    }
}

fn rasterise(font: &FontRef<'static>, text: &str, size: u32) -> Mask {
    let scaled = font.as_scaled(PxScale::from(size as f32));
    let ascent = scaled.ascent();
    let height = (scaled.ascent() - scaled.descent()).ceil().max(1.0) as u32;
    let mut glyphs = Vec::new();
    let mut caret = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(previous) = previous {
            caret += scaled.kern(previous, id);
        }
        glyphs.push(id.with_scale_and_position(PxScale::from(size as f32), point(caret, ascent)));
        caret += scaled.h_advance(id);
        previous = Some(id);
    }
    let width = caret.ceil().max(1.0) as u32;
    let mut coverage = vec![0u8; (width * height) as usize];
    for glyph in glyphs {
        let Some(outlined) = font.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outlined.px_bounds();
        outlined.draw(|gx, gy, c| {
            let x = bounds.min.x as i64 + gx as i64;
            let y = bounds.min.y as i64 + gy as i64;
            if x >= 0 && y >= 0 && (x as u32) < width && (y as u32) < height {
                let cell = &mut coverage[(y as u32 * width + x as u32) as usize];
                *cell = (*cell).max((c.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        });
    }
    Mask {
        width,
        height,
        coverage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded() {
        let mut renderer = TextRenderer::new();
        for confidence in 0..2000 {
            renderer.render(&format!("person {confidence}%"), 12);
            assert!(renderer.cache.len() <= CACHE_LIMIT);
        }
        let first = renderer.render("car 50%", 12).clone();
        assert_eq!(
            &first,
            renderer.render("car 50%", 12),
            "rendering is deterministic"
        );
    }
}
