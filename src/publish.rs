//! What `detectevents` publishes over MQTT: the topic layout and the JSON payloads. No GStreamer
//! types, no network: `crate::mqtt` sends what this module builds.
//!
//! Topics, under a prefix (`asyncdetect` by default), laid out as Frigate does where it has an
//! equivalent:
//!
//! | topic | payload | delivery |
//! |---|---|---|
//! | `<prefix>/events` | one event, JSON | QoS 1 |
//! | `<prefix>/<camera>/available` | `online` / `offline` (also the last will) | retained |
//! | `<prefix>/<camera>/<label>` | objects of that class in the picture now | retained |
//! | `<prefix>/<camera>/zones/<zone>/<label>` | objects of that class in the zone now | retained |
//! | `<prefix>/<camera>/lines/<line>/in`, `.../out` | crossings since the start | retained |
//! | `<prefix>/<camera>/<label>/snapshot` | JPEG of the newest object event of that class | retained |
//! | `<prefix>/<camera>/detections` | every frame's objects, JSON (opt-in) | QoS 0 |

use std::collections::BTreeMap;

use serde_json::json;

use crate::events::{Counts, Event};

/// The topics of one camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
    camera: String,
}

/// A topic level: MQTT gives `/`, `+` and `#` meaning, so names carrying them are changed.
fn level(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if matches!(c, '/' | '+' | '#') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() { "_".into() } else { cleaned }
}

impl Topics {
    pub fn new(prefix: &str, camera: &str) -> Topics {
        let prefix = prefix.trim_end_matches('/');
        Topics {
            prefix: prefix.split('/').map(level).collect::<Vec<_>>().join("/"),
            camera: level(camera),
        }
    }

    pub fn camera(&self) -> &str {
        &self.camera
    }

    pub fn events(&self) -> String {
        format!("{}/events", self.prefix)
    }

    pub fn available(&self) -> String {
        format!("{}/{}/available", self.prefix, self.camera)
    }

    pub fn objects(&self, label: &str) -> String {
        format!("{}/{}/{}", self.prefix, self.camera, level(label))
    }

    pub fn zone(&self, zone: &str, label: &str) -> String {
        format!(
            "{}/{}/zones/{}/{}",
            self.prefix,
            self.camera,
            level(zone),
            level(label)
        )
    }

    pub fn line(&self, line: &str, direction: &str) -> String {
        format!(
            "{}/{}/lines/{}/{}",
            self.prefix,
            self.camera,
            level(line),
            direction
        )
    }

    pub fn snapshot(&self, label: &str) -> String {
        format!("{}/{}/{}/snapshot", self.prefix, self.camera, level(label))
    }

    pub fn detections(&self) -> String {
        format!("{}/{}/detections", self.prefix, self.camera)
    }
}

/// The event as JSON: `type`, `camera`, `object_id`, `label`, what the event adds (`zone`, `line`
/// and `direction`, `dwell`, `confidence`, `first_seen`/`last_seen`/`best_confidence`), the
/// stream time `timestamp` and the wall-clock `time` (seconds since 1970) it was published at.
pub fn event_json(event: &Event, camera: &str, stream_seconds: Option<f64>, unix_seconds: f64) -> Vec<u8> {
    let mut value = match event {
        Event::Start { confidence, .. } => json!({ "confidence": confidence }),
        Event::End {
            first_seen,
            last_seen,
            best_confidence,
            ..
        } => json!({
            "first_seen": first_seen, "last_seen": last_seen, "best_confidence": best_confidence,
        }),
        Event::Enter { zone, .. } => json!({ "zone": zone }),
        Event::Leave { zone, dwell, .. } => json!({ "zone": zone, "dwell": dwell }),
        Event::Cross { line, direction, .. } => json!({ "line": line, "direction": direction.as_str() }),
    };
    let (id, label) = event.object();
    value["type"] = json!(event.name());
    value["object_id"] = json!(id);
    value["label"] = json!(label);
    value["camera"] = json!(camera);
    value["timestamp"] = json!(stream_seconds);
    value["time"] = json!(unix_seconds);
    value.to_string().into_bytes()
}

/// Whether an event deserves a snapshot: something arrived, not something left.
pub fn wants_snapshot(event: &Event) -> bool {
    matches!(
        event,
        Event::Start { .. } | Event::Enter { .. } | Event::Cross { .. }
    )
}

/// The retained count topics whose value changed from `old` (everything when `None`), with their
/// new value; a class gone from a zone or from the picture is published as 0.
pub fn count_messages(topics: &Topics, old: Option<&Counts>, new: &Counts) -> Vec<(String, String)> {
    let mut messages = Vec::new();
    let empty = BTreeMap::new();
    let mut per_label = |topic: &dyn Fn(&str) -> String,
                         before: Option<&BTreeMap<String, u32>>,
                         now: &BTreeMap<String, u32>| {
        let before = before.unwrap_or(&empty);
        for label in before
            .keys()
            .chain(now.keys().filter(|l| !before.contains_key(*l)))
        {
            let value = now.get(label).copied().unwrap_or(0);
            if old.is_none() || before.get(label).copied().unwrap_or(0) != value {
                messages.push((topic(label), value.to_string()));
            }
        }
    };
    per_label(
        &|label| topics.objects(label),
        old.map(|o| &o.objects),
        &new.objects,
    );
    for (zone, labels) in &new.zones {
        per_label(
            &|label| topics.zone(zone, label),
            old.and_then(|o| o.zones.get(zone)),
            labels,
        );
    }
    for (line, &(inward, outward)) in &new.lines {
        let before = old.and_then(|o| o.lines.get(line)).copied();
        if before.is_none_or(|(i, _)| i != inward) {
            messages.push((topics.line(line, "in"), inward.to_string()));
        }
        if before.is_none_or(|(_, o)| o != outward) {
            messages.push((topics.line(line, "out"), outward.to_string()));
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Direction;

    #[test]
    fn topics_follow_the_documented_layout_and_escape_wildcards() {
        let topics = Topics::new("site/asyncdetect/", "front door");
        assert_eq!(topics.events(), "site/asyncdetect/events");
        assert_eq!(topics.available(), "site/asyncdetect/front door/available");
        assert_eq!(topics.objects("person"), "site/asyncdetect/front door/person");
        assert_eq!(
            topics.zone("drive/way", "car"),
            "site/asyncdetect/front door/zones/drive_way/car"
        );
        assert_eq!(
            topics.line("gate", "in"),
            "site/asyncdetect/front door/lines/gate/in"
        );
        assert_eq!(topics.snapshot("dog"), "site/asyncdetect/front door/dog/snapshot");
        assert_eq!(Topics::new("a", "cam+#").camera(), "cam__");
    }

    #[test]
    fn events_carry_their_fields_and_times() {
        let event = Event::Cross {
            line: "gate".into(),
            id: 7,
            label: "car".into(),
            direction: Direction::In,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&event_json(&event, "cam", Some(1.5), 1_700_000_000.25)).unwrap();
        assert_eq!(json["type"], "cross");
        assert_eq!(json["line"], "gate");
        assert_eq!(json["direction"], "in");
        assert_eq!(json["object_id"], 7);
        assert_eq!(json["camera"], "cam");
        assert_eq!(json["timestamp"], 1.5);
        assert_eq!(json["time"], 1_700_000_000.25);
        assert!(wants_snapshot(&event));
        assert!(!wants_snapshot(&Event::Leave {
            zone: "z".into(),
            id: 1,
            label: "x".into(),
            dwell: 1.0
        }));
    }

    #[test]
    fn only_changed_counts_are_published_and_a_vanished_class_goes_to_zero() {
        let topics = Topics::new("p", "c");
        let mut first = Counts::default();
        first.objects.insert("person".into(), 2);
        first
            .zones
            .insert("door".into(), BTreeMap::from([("person".to_string(), 1)]));
        first.lines.insert("gate".into(), (0, 0));
        let all = count_messages(&topics, None, &first);
        assert_eq!(
            all,
            vec![
                ("p/c/person".to_string(), "2".to_string()),
                ("p/c/zones/door/person".to_string(), "1".to_string()),
                ("p/c/lines/gate/in".to_string(), "0".to_string()),
                ("p/c/lines/gate/out".to_string(), "0".to_string()),
            ]
        );
        assert!(count_messages(&topics, Some(&first), &first).is_empty());
        let mut second = first.clone();
        second.zones.insert("door".into(), BTreeMap::new());
        second.lines.insert("gate".into(), (1, 0));
        assert_eq!(
            count_messages(&topics, Some(&first), &second),
            vec![
                ("p/c/zones/door/person".to_string(), "0".to_string()),
                ("p/c/lines/gate/in".to_string(), "1".to_string()),
            ]
        );
    }
}
