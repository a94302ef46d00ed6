//! What `detectevents` configured, read from its `DetectEventsMeta`: the zones and lines with their
//! live counts, drawn under the boxes.

use std::collections::BTreeMap;

use crate::draw::{Canvas, Rgb, TextRenderer, class_color};
use crate::events::{Line, Zone, parse_lines, parse_zones};

/// Zones and lines with the text to write beside each.
#[derive(Debug, Default, Clone)]
pub struct Scene {
    pub zones: Vec<(Zone, String)>,
    pub lines: Vec<(Line, String)>,
}

impl Scene {
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty() && self.lines.is_empty()
    }
}

/// Parsed shapes, kept while the texts stay the same (they do for a whole stream).
#[derive(Default)]
pub struct ShapeCache {
    texts: (String, String),
    shapes: (Vec<Zone>, Vec<Line>),
}

impl ShapeCache {
    fn shapes(&mut self, zones: &str, lines: &str) -> &(Vec<Zone>, Vec<Line>) {
        if self.texts.0 != zones || self.texts.1 != lines {
            self.texts = (zones.to_string(), lines.to_string());
            self.shapes = (
                parse_zones(zones).unwrap_or_default(),
                parse_lines(lines).unwrap_or_default(),
            );
        }
        &self.shapes
    }
}

/// The scene a buffer's `DetectEventsMeta` describes, if it has one.
pub fn read_scene(buffer: &gst::BufferRef, cache: &mut ShapeCache) -> Option<Scene> {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, crate::detectevents::META_NAME).ok()?;
    let structure = meta.structure();
    let zones_text = structure.get::<String>("zone-shapes").unwrap_or_default();
    let lines_text = structure.get::<String>("line-shapes").unwrap_or_default();
    let mut zone_counts: BTreeMap<String, Vec<(String, u32)>> = BTreeMap::new();
    if let Ok(list) = structure.get::<gst::List>("zones") {
        for value in list.iter() {
            if let Ok(s) = value.get::<gst::Structure>()
                && let (Ok(zone), Ok(label), Ok(count)) = (
                    s.get::<String>("zone"),
                    s.get::<String>("label"),
                    s.get::<u32>("count"),
                )
            {
                zone_counts.entry(zone).or_default().push((label, count));
            }
        }
    }
    let mut line_counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    if let Ok(list) = structure.get::<gst::List>("lines") {
        for value in list.iter() {
            if let Ok(s) = value.get::<gst::Structure>()
                && let (Ok(line), Ok(inward), Ok(outward)) =
                    (s.get::<String>("line"), s.get::<u64>("in"), s.get::<u64>("out"))
            {
                line_counts.insert(line, (inward, outward));
            }
        }
    }
    let (zones, lines) = cache.shapes(&zones_text, &lines_text);
    Some(Scene {
        zones: zones
            .iter()
            .map(|zone| {
                let counts: Vec<String> = zone_counts
                    .get(&zone.name)
                    .into_iter()
                    .flatten()
                    .filter(|(_, count)| *count > 0)
                    .map(|(label, count)| format!("{count} {label}"))
                    .collect();
                let text = if counts.is_empty() {
                    format!("{}: 0", zone.name)
                } else {
                    format!("{}: {}", zone.name, counts.join(", "))
                };
                (zone.clone(), text)
            })
            .collect(),
        lines: lines
            .iter()
            .map(|line| {
                let (inward, outward) = line_counts.get(&line.name).copied().unwrap_or((0, 0));
                (line.clone(), format!("{}: in {inward} out {outward}", line.name))
            })
            .collect(),
    })
}

/// Draws zone outlines and lines, each with its counts in a tab of its colour.
pub fn draw_scene(
    canvas: &mut Canvas<'_>,
    text: &mut TextRenderer,
    scene: &Scene,
    line_width: u32,
    font_size: u32,
) {
    let (w, h) = (canvas.width as f64, canvas.height as f64);
    let pixel = |x: f64, y: f64| (x * w, y * h);
    for (zone, label) in &scene.zones {
        let color: Rgb = class_color(&zone.name);
        let points = &zone.polygon;
        for (index, a) in points.iter().enumerate() {
            let b = points[(index + 1) % points.len()];
            canvas.line(pixel(a.x, a.y), pixel(b.x, b.y), line_width, color);
        }
        // The tab at the zone's top-left-most corner.
        if let Some(corner) = points.iter().min_by(|p, q| (p.y + p.x).total_cmp(&(q.y + q.x))) {
            let (x, y) = pixel(corner.x, corner.y);
            canvas.tab(text, (x as i64, y as i64), label, font_size, color);
        }
    }
    for (line, label) in &scene.lines {
        let color = class_color(&line.name);
        canvas.line(
            pixel(line.a.x, line.a.y),
            pixel(line.b.x, line.b.y),
            line_width * 2,
            color,
        );
        let (x, y) = pixel((line.a.x + line.b.x) / 2.0, (line.a.y + line.b.y) / 2.0);
        canvas.tab(text, (x as i64, y as i64), label, font_size, color);
    }
}
