//! Surveillance events from tracked objects (the `detectevents` element's logic): named zones
//! (polygons) that objects enter, stay in and leave, named lines they cross in one direction or
//! the other, live counts per zone and class, and each object's life (first seen, best
//! confidence, last seen). Pure logic: no GStreamer types.
//!
//! An object is judged on one stable point of its box (the bottom centre by default: where a
//! person or a car touches the ground). A band of `hysteresis` (normalised units) around each
//! zone border and line makes a point that jitters on it count once: an object is inside a zone
//! only once its point is that far inside, outside only once that far out, and it is on a side of
//! a line only once that far from it.

use std::collections::{BTreeMap, HashMap};

/// A point in normalised picture coordinates (0..1, origin top left).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// Which point of a box stands for the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Anchor {
    #[default]
    BottomCenter,
    Center,
    TopCenter,
}

impl Anchor {
    /// The anchor point of the box (x_min, y_min, x_max, y_max).
    pub fn of(self, bbox: [f64; 4]) -> Point {
        let x = (bbox[0] + bbox[2]) / 2.0;
        let y = match self {
            Anchor::BottomCenter => bbox[3],
            Anchor::Center => (bbox[1] + bbox[3]) / 2.0,
            Anchor::TopCenter => bbox[1],
        };
        Point { x, y }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub name: String,
    pub polygon: Vec<Point>,
}

/// A line from `a` to `b`. Crossing it from its left to its right (as seen walking from `a` to
/// `b`, y pointing down the picture) is `in`; the other way is `out`.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub a: Point,
    pub b: Point,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// A tracked object on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub id: u32,
    pub label: String,
    pub confidence: f64,
    /// Normalised x_min, y_min, x_max, y_max.
    pub bbox: [f64; 4],
}

/// Something that happened on a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An object was seen for the first time.
    Start {
        id: u32,
        label: String,
        confidence: f64,
    },
    /// An object was not seen for `lost_after`: its life, `first_seen` to `last_seen` (seconds),
    /// with its best confidence.
    End {
        id: u32,
        label: String,
        first_seen: f64,
        last_seen: f64,
        best_confidence: f64,
    },
    Enter {
        zone: String,
        id: u32,
        label: String,
    },
    /// `dwell`: seconds inside.
    Leave {
        zone: String,
        id: u32,
        label: String,
        dwell: f64,
    },
    Cross {
        line: String,
        id: u32,
        label: String,
        direction: Direction,
    },
}

impl Event {
    /// The event's name in messages and payloads.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Start { .. } => "start",
            Event::End { .. } => "end",
            Event::Enter { .. } => "enter",
            Event::Leave { .. } => "leave",
            Event::Cross { .. } => "cross",
        }
    }

    /// The object it is about: id and label.
    pub fn object(&self) -> (u32, &str) {
        match self {
            Event::Start { id, label, .. }
            | Event::End { id, label, .. }
            | Event::Enter { id, label, .. }
            | Event::Leave { id, label, .. }
            | Event::Cross { id, label, .. } => (*id, label),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone)]
struct ObjectState {
    label: String,
    first_seen: f64,
    last_seen: f64,
    best_confidence: f64,
    /// Per zone: since when the object is inside (None: outside or not yet decided).
    inside_since: Vec<Option<f64>>,
    /// Per line: the side it was last clearly on, and its anchor then.
    side: Vec<Option<(Side, Point)>>,
}

/// Turns tracked objects frame by frame into events and counts.
#[derive(Debug, Clone)]
pub struct EventTracker {
    pub zones: Vec<Zone>,
    pub lines: Vec<Line>,
    pub anchor: Anchor,
    pub hysteresis: f64,
    /// An object not seen for this long (seconds) has ended.
    pub lost_after: f64,
    objects: HashMap<u32, ObjectState>,
    /// Per line: crossings in and out so far.
    crossings: Vec<(u64, u64)>,
}

/// The counts after a frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Counts {
    /// Objects alive now (seen and not yet ended), per label.
    pub objects: BTreeMap<String, u32>,
    /// Per zone name: objects inside now, per label.
    pub zones: BTreeMap<String, BTreeMap<String, u32>>,
    /// Per line name: crossings in and out since the start.
    pub lines: BTreeMap<String, (u64, u64)>,
}

impl EventTracker {
    pub fn new(zones: Vec<Zone>, lines: Vec<Line>, anchor: Anchor, hysteresis: f64, lost_after: f64) -> Self {
        let crossings = vec![(0, 0); lines.len()];
        EventTracker {
            zones,
            lines,
            anchor,
            hysteresis,
            lost_after,
            objects: HashMap::new(),
            crossings,
        }
    }

    /// Forgets every object (a flush: another part of the stream); the line totals stay.
    pub fn reset(&mut self) {
        self.objects.clear();
    }

    /// The objects seen on the frame at `at` seconds; returns what happened, in order.
    pub fn update(&mut self, at: f64, observations: &[Observation]) -> Vec<Event> {
        let mut events = Vec::new();
        for observation in observations {
            let point = self.anchor.of(observation.bbox);
            let (zones, lines) = (self.zones.len(), self.lines.len());
            let state = self.objects.entry(observation.id).or_insert_with(|| {
                events.push(Event::Start {
                    id: observation.id,
                    label: observation.label.clone(),
                    confidence: observation.confidence,
                });
                ObjectState {
                    label: observation.label.clone(),
                    first_seen: at,
                    last_seen: at,
                    best_confidence: observation.confidence,
                    inside_since: vec![None; zones],
                    side: vec![None; lines],
                }
            });
            state.last_seen = at;
            state.label.clone_from(&observation.label);
            state.best_confidence = state.best_confidence.max(observation.confidence);
            for (index, zone) in self.zones.iter().enumerate() {
                let depth = signed_depth(&zone.polygon, point);
                let inside = state.inside_since[index].is_some();
                if !inside && depth > self.hysteresis {
                    state.inside_since[index] = Some(at);
                    events.push(Event::Enter {
                        zone: zone.name.clone(),
                        id: observation.id,
                        label: state.label.clone(),
                    });
                } else if inside && depth < -self.hysteresis {
                    let since = state.inside_since[index].take().unwrap_or(at);
                    events.push(Event::Leave {
                        zone: zone.name.clone(),
                        id: observation.id,
                        label: state.label.clone(),
                        dwell: at - since,
                    });
                }
            }
            for (index, line) in self.lines.iter().enumerate() {
                let distance = signed_distance(line, point);
                if distance.abs() <= self.hysteresis {
                    continue;
                }
                let side = if distance > 0.0 { Side::Right } else { Side::Left };
                if let Some((before, from)) = state.side[index]
                    && before != side
                    && crosses_segment(line, from, point)
                {
                    let direction = if side == Side::Right {
                        Direction::In
                    } else {
                        Direction::Out
                    };
                    let totals = &mut self.crossings[index];
                    match direction {
                        Direction::In => totals.0 += 1,
                        Direction::Out => totals.1 += 1,
                    }
                    events.push(Event::Cross {
                        line: line.name.clone(),
                        id: observation.id,
                        label: state.label.clone(),
                        direction,
                    });
                }
                state.side[index] = Some((side, point));
            }
        }
        // Objects not seen for `lost_after` have ended; they leave their zones.
        let lost_after = self.lost_after;
        let mut ended: Vec<u32> = self
            .objects
            .iter()
            .filter(|(_, state)| at - state.last_seen > lost_after)
            .map(|(id, _)| *id)
            .collect();
        ended.sort_unstable();
        for id in ended {
            let Some(state) = self.objects.remove(&id) else {
                continue;
            };
            for (zone, since) in self.zones.iter().zip(&state.inside_since) {
                if let Some(since) = since {
                    events.push(Event::Leave {
                        zone: zone.name.clone(),
                        id,
                        label: state.label.clone(),
                        dwell: state.last_seen - since,
                    });
                }
            }
            events.push(Event::End {
                id,
                label: state.label,
                first_seen: state.first_seen,
                last_seen: state.last_seen,
                best_confidence: state.best_confidence,
            });
        }
        events
    }

    /// Objects alive now and inside each zone now, per label, and each line's crossings so far.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for state in self.objects.values() {
            *counts.objects.entry(state.label.clone()).or_insert(0) += 1;
        }
        for (index, zone) in self.zones.iter().enumerate() {
            let mut per_label = BTreeMap::new();
            for state in self.objects.values() {
                if state.inside_since[index].is_some() {
                    *per_label.entry(state.label.clone()).or_insert(0) += 1;
                }
            }
            counts.zones.insert(zone.name.clone(), per_label);
        }
        for (line, totals) in self.lines.iter().zip(&self.crossings) {
            counts.lines.insert(line.name.clone(), *totals);
        }
        counts
    }
}

/// How far `point` is inside `polygon` (negative: outside), in normalised units: the distance to
/// the nearest edge, signed by the even-odd rule.
pub fn signed_depth(polygon: &[Point], point: Point) -> f64 {
    if polygon.len() < 3 {
        return f64::NEG_INFINITY;
    }
    let mut inside = false;
    let mut nearest = f64::INFINITY;
    for (i, a) in polygon.iter().enumerate() {
        let b = polygon[(i + 1) % polygon.len()];
        if (a.y > point.y) != (b.y > point.y) {
            let x = a.x + (point.y - a.y) / (b.y - a.y) * (b.x - a.x);
            if point.x < x {
                inside = !inside;
            }
        }
        nearest = nearest.min(segment_distance(*a, b, point));
    }
    if inside { nearest } else { -nearest }
}

fn segment_distance(a: Point, b: Point, p: Point) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let length = dx * dx + dy * dy;
    let t = if length > 0.0 {
        (((p.x - a.x) * dx + (p.y - a.y) * dy) / length).clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((a.x + t * dx - p.x).powi(2) + (a.y + t * dy - p.y).powi(2)).sqrt()
}

/// Distance of `p` from the infinite line through `line`, positive on its right (walking from `a`
/// to `b` with y pointing down).
fn signed_distance(line: &Line, p: Point) -> f64 {
    let (dx, dy) = (line.b.x - line.a.x, line.b.y - line.a.y);
    let length = (dx * dx + dy * dy).sqrt();
    if length == 0.0 {
        return 0.0;
    }
    // With y down, the cross product is positive for points on the right of a->b.
    (dx * (p.y - line.a.y) - dy * (p.x - line.a.x)) / length
}

/// Whether the move from `from` to `to` passes through the segment itself, not past its ends.
fn crosses_segment(line: &Line, from: Point, to: Point) -> bool {
    let (d_from, d_to) = (signed_distance(line, from), signed_distance(line, to));
    if d_from == d_to {
        return false;
    }
    let t = d_from / (d_from - d_to);
    let crossing = Point {
        x: from.x + t * (to.x - from.x),
        y: from.y + t * (to.y - from.y),
    };
    let (dx, dy) = (line.b.x - line.a.x, line.b.y - line.a.y);
    let along = ((crossing.x - line.a.x) * dx + (crossing.y - line.a.y) * dy) / (dx * dx + dy * dy);
    (0.0..=1.0).contains(&along)
}

/// Parses zones written as `name:x,y x,y x,y ...;name:...` (normalised coordinates).
pub fn parse_zones(text: &str) -> Result<Vec<Zone>, String> {
    named_points(text, "zone")?
        .into_iter()
        .map(|(name, polygon)| {
            if polygon.len() < 3 {
                Err(format!(
                    "zone `{name}` needs at least 3 points, has {}",
                    polygon.len()
                ))
            } else {
                Ok(Zone { name, polygon })
            }
        })
        .collect()
}

/// Parses lines written as `name:x,y x,y;name:...` (from a to b: crossing to its right is `in`).
pub fn parse_lines(text: &str) -> Result<Vec<Line>, String> {
    named_points(text, "line")?
        .into_iter()
        .map(|(name, points)| match points[..] {
            [a, b] if a != b => Ok(Line { name, a, b }),
            _ => Err(format!(
                "line `{name}` needs 2 different points, has {}",
                points.len()
            )),
        })
        .collect()
}

fn named_points(text: &str, what: &str) -> Result<Vec<(String, Vec<Point>)>, String> {
    let mut seen = std::collections::HashSet::new();
    text.split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, points) = part
                .split_once(':')
                .ok_or_else(|| format!("`{part}`: a {what} is written `name:x,y x,y ...`"))?;
            let name = name.trim();
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)) {
                return Err(format!(
                    "`{name}`: a {what} name is letters, digits, `-`, `_` and `.`"
                ));
            }
            if !seen.insert(name.to_string()) {
                return Err(format!("two {what}s are named `{name}`"));
            }
            let points = points
                .split_whitespace()
                .map(|pair| {
                    let (x, y) = pair
                        .split_once(',')
                        .ok_or_else(|| format!("{what} `{name}`: `{pair}` is not a point `x,y`"))?;
                    let number = |v: &str| {
                        v.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|v| (0.0..=1.0).contains(v))
                            .ok_or_else(|| format!("{what} `{name}`: `{v}` is not a number from 0 to 1"))
                    };
                    Ok(Point {
                        x: number(x)?,
                        y: number(y)?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok((name.to_string(), points))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(id: u32, x: f64, y: f64) -> Observation {
        // A box whose bottom centre is (x, y).
        Observation {
            id,
            label: "person".into(),
            confidence: 0.8,
            bbox: [x - 0.05, y - 0.2, x + 0.05, y],
        }
    }

    fn gate() -> EventTracker {
        // A horizontal line across the middle, drawn left to right: moving down crosses to its
        // right (`in`).
        let lines = parse_lines("gate:0.2,0.5 0.8,0.5").unwrap();
        let zones = parse_zones("yard:0.0,0.6 1.0,0.6 1.0,1.0 0.0,1.0").unwrap();
        EventTracker::new(zones, lines, Anchor::BottomCenter, 0.02, 1.0)
    }

    fn crossings(events: &[Event]) -> Vec<(u32, Direction)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Cross { id, direction, .. } => Some((*id, *direction)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_crossing_counts_once_with_its_direction() {
        let mut tracker = gate();
        let mut events = Vec::new();
        // Object 1 walks down through the line, object 2 walks up.
        for step in 0..=20 {
            let t = step as f64 / 10.0;
            let down = 0.3 + 0.02 * step as f64;
            let up = 0.7 - 0.02 * step as f64;
            events.extend(tracker.update(t, &[object(1, 0.4, down), object(2, 0.6, up)]));
        }
        assert_eq!(crossings(&events), vec![(1, Direction::In), (2, Direction::Out)]);
        assert_eq!(tracker.counts().lines["gate"], (1, 1));
    }

    #[test]
    fn jitter_on_the_line_is_not_counted_twice() {
        let mut tracker = gate();
        let mut events = Vec::new();
        // Approaches, then jitters around the line within the band, then goes on through.
        let path = [0.40, 0.45, 0.49, 0.51, 0.49, 0.515, 0.485, 0.51, 0.49, 0.55, 0.60];
        for (step, y) in path.iter().enumerate() {
            events.extend(tracker.update(step as f64 / 10.0, &[object(1, 0.5, *y)]));
        }
        assert_eq!(crossings(&events), vec![(1, Direction::In)]);
        // Jitter that goes clearly across and back is two crossings: in, then out.
        let mut tracker = gate();
        let path = [0.40, 0.56, 0.44];
        let mut events = Vec::new();
        for (step, y) in path.iter().enumerate() {
            events.extend(tracker.update(step as f64 / 10.0, &[object(1, 0.5, *y)]));
        }
        assert_eq!(crossings(&events), vec![(1, Direction::In), (1, Direction::Out)]);
    }

    #[test]
    fn passing_beside_the_line_is_no_crossing() {
        let mut tracker = gate();
        let mut events = Vec::new();
        for step in 0..=20 {
            // x = 0.9: beyond the line's end at 0.8.
            events.extend(tracker.update(step as f64 / 10.0, &[object(1, 0.9, 0.3 + 0.02 * step as f64)]));
        }
        assert!(crossings(&events).is_empty(), "{events:?}");
    }

    #[test]
    fn zones_report_enter_leave_dwell_and_live_counts() {
        let mut tracker = gate();
        let mut events = Vec::new();
        events.extend(tracker.update(0.0, &[object(1, 0.5, 0.4)]));
        events.extend(tracker.update(1.0, &[object(1, 0.5, 0.7)]));
        assert_eq!(tracker.counts().zones["yard"]["person"], 1);
        events.extend(tracker.update(2.0, &[object(1, 0.5, 0.8)]));
        events.extend(tracker.update(4.0, &[object(1, 0.5, 0.4)]));
        assert!(tracker.counts().zones["yard"].is_empty());
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Start { .. } => "start".to_string(),
                Event::Enter { zone, .. } => format!("enter {zone}"),
                Event::Leave { zone, dwell, .. } => format!("leave {zone} after {dwell}"),
                Event::Cross { line, direction, .. } => format!("cross {line} {}", direction.as_str()),
                Event::End { .. } => "end".to_string(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "start",
                "enter yard",
                "cross gate in",
                "leave yard after 3",
                "cross gate out"
            ]
        );
    }

    #[test]
    fn an_object_not_seen_for_a_while_ends_and_leaves_its_zones() {
        let mut tracker = gate();
        tracker.update(0.0, &[object(7, 0.5, 0.8)]);
        tracker.update(
            0.5,
            &[Observation {
                confidence: 0.95,
                ..object(7, 0.5, 0.8)
            }],
        );
        let events = tracker.update(2.0, &[]);
        assert_eq!(
            events,
            vec![
                Event::Leave {
                    zone: "yard".into(),
                    id: 7,
                    label: "person".into(),
                    dwell: 0.5
                },
                Event::End {
                    id: 7,
                    label: "person".into(),
                    first_seen: 0.0,
                    last_seen: 0.5,
                    best_confidence: 0.95
                }
            ]
        );
        assert!(tracker.counts().zones["yard"].is_empty());
    }

    #[test]
    fn zones_and_lines_parse_and_mistakes_are_explained() {
        let zones = parse_zones("driveway: 0.1,0.5 0.5,0.5 0.5,1; door:0,0 0.2,0 0.2,0.2").unwrap();
        assert_eq!(zones.len(), 2);
        assert_eq!(zones[0].name, "driveway");
        assert!(
            parse_zones("a:0,0 1,1")
                .unwrap_err()
                .contains("at least 3 points")
        );
        assert!(
            parse_zones("a:0,0 1,1 2,0")
                .unwrap_err()
                .contains("`2` is not a number from 0 to 1")
        );
        assert!(parse_zones("0,0 1,1 1,0").unwrap_err().contains("name:x,y"));
        assert!(
            parse_zones("a:0,0 1,1 1,0;a:0,0 1,1 1,0")
                .unwrap_err()
                .contains("two zones")
        );
        assert!(
            parse_lines("gate:0.1,0.5 0.1,0.5")
                .unwrap_err()
                .contains("2 different points")
        );
        assert!(parse_lines("gate:0.1;0.5").unwrap_err().contains("not a point"));
        assert!(parse_lines("").unwrap().is_empty());
    }

    #[test]
    fn depth_is_signed_by_inside_and_outside() {
        let square = parse_zones("s:0.2,0.2 0.8,0.2 0.8,0.8 0.2,0.8")
            .unwrap()
            .remove(0)
            .polygon;
        assert!((signed_depth(&square, Point { x: 0.5, y: 0.5 }) - 0.3).abs() < 1e-9);
        assert!((signed_depth(&square, Point { x: 0.1, y: 0.5 }) + 0.1).abs() < 1e-9);
    }
}
