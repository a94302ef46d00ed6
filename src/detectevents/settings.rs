//! `detectevents`' settings and their property descriptions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gst::glib;
use gst::prelude::*;

use super::DetectEventsAnchor;
use super::outputs::OutputSettings;
use crate::events::{Anchor, EventTracker, Line, Zone};
use crate::mqtt::BrokerConfig;

pub const DEFAULT_HYSTERESIS: f64 = 0.02;
pub const DEFAULT_LOST_TIME: u64 = 2_000_000_000;

#[derive(Debug, Clone)]
pub struct Settings {
    pub zones_text: String,
    pub lines_text: String,
    pub config_file: Option<String>,
    pub zones: Vec<Zone>,
    pub lines: Vec<Line>,
    pub anchor: DetectEventsAnchor,
    pub hysteresis: f64,
    pub lost_time: u64,
    pub post_messages: bool,
    /// Bumped when zones, lines or how objects are judged change: the event state starts over.
    pub version: u64,
    /// Values refused before the element could post a warning: the start fails naming them.
    pub refused: BTreeMap<&'static str, String>,
    pub camera: Option<String>,
    pub mqtt_broker: Option<String>,
    pub mqtt_topic: String,
    pub mqtt_client_id: Option<String>,
    pub mqtt_user: Option<String>,
    pub mqtt_password: Option<String>,
    pub mqtt_ca_file: Option<String>,
    pub mqtt_queue: u32,
    pub mqtt_detections: bool,
    pub mqtt_snapshots: bool,
    pub snapshot_dir: Option<String>,
    pub snapshot_max_files: u32,
    pub snapshot_crop: bool,
    pub snapshot_quality: u32,
}

pub const DEFAULT_MQTT_TOPIC: &str = "asyncdetect";
pub const DEFAULT_MQTT_QUEUE: u32 = 1000;
pub const DEFAULT_SNAPSHOT_MAX_FILES: u32 = 100;
pub const DEFAULT_SNAPSHOT_QUALITY: u32 = 80;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            zones_text: String::new(),
            lines_text: String::new(),
            zones: Vec::new(),
            lines: Vec::new(),
            anchor: DetectEventsAnchor::default(),
            hysteresis: DEFAULT_HYSTERESIS,
            lost_time: DEFAULT_LOST_TIME,
            post_messages: true,
            version: 0,
            refused: BTreeMap::new(),
            config_file: None,
            camera: None,
            mqtt_broker: None,
            mqtt_topic: DEFAULT_MQTT_TOPIC.to_string(),
            mqtt_client_id: None,
            mqtt_user: None,
            mqtt_password: None,
            mqtt_ca_file: None,
            mqtt_queue: DEFAULT_MQTT_QUEUE,
            mqtt_detections: false,
            mqtt_snapshots: true,
            snapshot_dir: None,
            snapshot_max_files: DEFAULT_SNAPSHOT_MAX_FILES,
            snapshot_crop: true,
            snapshot_quality: DEFAULT_SNAPSHOT_QUALITY,
        }
    }
}

impl Settings {
    pub fn tracker(&self) -> EventTracker {
        let anchor = match self.anchor {
            DetectEventsAnchor::BottomCenter => Anchor::BottomCenter,
            DetectEventsAnchor::Center => Anchor::Center,
            DetectEventsAnchor::TopCenter => Anchor::TopCenter,
        };
        EventTracker::new(
            self.zones.clone(),
            self.lines.clone(),
            anchor,
            self.hysteresis,
            self.lost_time as f64 / 1e9,
        )
    }

    /// The outputs' settings; `element_name` names the camera unless `camera` does.
    pub fn outputs(&self, element_name: &str) -> Result<OutputSettings, String> {
        let camera = self.camera.clone().unwrap_or_else(|| element_name.to_string());
        let broker = match &self.mqtt_broker {
            None => None,
            Some(url) => {
                let mut broker = BrokerConfig::from_url(url)?;
                broker.client_id = self
                    .mqtt_client_id
                    .clone()
                    .unwrap_or_else(|| format!("asyncdetect-{camera}-{}", std::process::id()));
                broker.username = self.mqtt_user.clone();
                broker.password = self.mqtt_password.clone();
                broker.ca_file = self.mqtt_ca_file.clone();
                broker.queue = self.mqtt_queue.max(1) as usize;
                Some(broker)
            }
        };
        Ok(OutputSettings {
            camera,
            broker,
            topic_prefix: self.mqtt_topic.clone(),
            detections: self.mqtt_detections,
            mqtt_snapshots: self.mqtt_snapshots,
            snapshot_dir: self.snapshot_dir.as_ref().map(PathBuf::from),
            snapshot_max_files: self.snapshot_max_files.max(1),
            snapshot_crop: self.snapshot_crop,
            snapshot_quality: self.snapshot_quality.clamp(1, 100) as u8,
        })
    }
}

/// Zones and lines from a TOML file: `zones = "..."` and `lines = "..."`, written as the
/// properties are (the rtsp_camera example's camera entries use the same keys).
pub fn read_config_file(path: &str) -> Result<(String, Vec<Zone>, String, Vec<Line>), String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        zones: String,
        #[serde(default)]
        lines: String,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read '{path}': {e}"))?;
    let file: File =
        toml::from_str(&text).map_err(|e| format!("'{path}' is not a valid events file: {e}"))?;
    let zones = crate::events::parse_zones(&file.zones).map_err(|e| format!("'{path}': {e}"))?;
    let lines = crate::events::parse_lines(&file.lines).map_err(|e| format!("'{path}': {e}"))?;
    Ok((file.zones, zones, file.lines, lines))
}

/// The element's properties.
pub fn param_specs() -> Vec<glib::ParamSpec> {
    vec![
                glib::ParamSpecString::builder("zones")
                    .nick("Zones")
                    .blurb(
                        "Named polygons, `name:x,y x,y x,y ...` separated by `;`, in normalised picture \
                         coordinates (0 to 1, origin top left). Objects entering and leaving each one are \
                         reported with the time they spent inside, and each zone's live count per class.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("lines")
                    .nick("Lines")
                    .blurb(
                        "Named lines, `name:x1,y1 x2,y2` separated by `;`, normalised. Crossing from the \
                         line's left to its right, as seen walking from its first point to its second \
                         (y pointing down), is `in`; the other way `out`. Crossings are counted per line.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default::<DetectEventsAnchor>(
                    "anchor",
                    DetectEventsAnchor::default(),
                )
                .nick("Anchor")
                .blurb("The point of each box that zones and lines judge.")
                .mutable_playing()
                .build(),
                glib::ParamSpecDouble::builder("hysteresis")
                    .nick("Hysteresis")
                    .blurb(
                        "A band this wide (normalised) around zone borders and lines: an object is inside, \
                         outside or on a side only once its point is that far past, so a box jittering on a \
                         line is counted once.",
                    )
                    .minimum(0.0)
                    .maximum(0.5)
                    .default_value(DEFAULT_HYSTERESIS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("lost-time")
                    .nick("Lost time")
                    .blurb(
                        "Nanoseconds of stream time an object may go unseen before it ends (an `end` event, \
                         and it leaves its zones).",
                    )
                    .default_value(DEFAULT_LOST_TIME)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb(
                        "Post each event (`detectevents`) and each change of the counts (`detectevents-counts`) \
                         as an element message. The buffers carry them either way.",
                    )
                    .default_value(true)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("events")
                    .nick("Events")
                    .blurb("Events since the element started.")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("config-file")
                    .nick("Configuration file")
                    .blurb(
                        "A TOML file with `zones = \"...\"` and `lines = \"...\"`, written as the properties \
                         are; read when set, replacing both.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("camera")
                    .nick("Camera")
                    .blurb("The camera's name in events and MQTT topics (default: the element's name).")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("mqtt-broker")
                    .nick("MQTT broker")
                    .blurb(
                        "Publish events, retained counts and snapshots to this broker, `mqtt://host:1883` or \
                         `mqtts://host:8883`. Publishing never holds up the video: messages wait on a bounded \
                         queue while the broker is away and the connection is retried with back-off.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("mqtt-topic")
                    .nick("MQTT topic prefix")
                    .blurb(
                        "Topics: <prefix>/events, <prefix>/<camera>/available, <prefix>/<camera>/<label>, \
                         <prefix>/<camera>/zones/<zone>/<label>, <prefix>/<camera>/lines/<line>/in|out, \
                         <prefix>/<camera>/<label>/snapshot, <prefix>/<camera>/detections.",
                    )
                    .default_value(Some(DEFAULT_MQTT_TOPIC))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("mqtt-client-id")
                    .nick("MQTT client id")
                    .blurb("Default: asyncdetect-<camera>-<process id>.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("mqtt-user")
                    .nick("MQTT user")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("mqtt-password")
                    .nick("MQTT password")
                    .blurb("Never logged nor readable back.")
                    .flags(glib::ParamFlags::WRITABLE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("mqtt-ca-file")
                    .nick("MQTT CA file")
                    .blurb("PEM certificates that sign an mqtts:// broker's certificate (default: the system's).")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("mqtt-queue")
                    .nick("MQTT queue")
                    .blurb("Messages that may wait for the broker; more are dropped and counted (mqtt-dropped).")
                    .minimum(1)
                    .default_value(DEFAULT_MQTT_QUEUE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("mqtt-detections")
                    .nick("MQTT detections")
                    .blurb("Also publish every frame's objects (JSON as detectexport writes it, QoS 0).")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("mqtt-snapshots")
                    .nick("MQTT snapshots")
                    .blurb("Publish a JPEG snapshot for each start, enter and cross event (retained, per class).")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("mqtt-status")
                    .nick("MQTT status")
                    .blurb("off, connecting, connected, unreachable: <why> or refused: <why>.")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("mqtt-sent")
                    .nick("MQTT sent")
                    .blurb("Messages handed to the broker's connection.")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("mqtt-dropped")
                    .nick("MQTT dropped")
                    .blurb("Messages dropped because the queue was full.")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("snapshot-dir")
                    .nick("Snapshot directory")
                    .blurb(
                        "Write a JPEG snapshot for each start, enter and cross event here, named \
                         <camera>-<unix ms>-<object id>-<event>.jpg; each is announced by a \
                         `detectevents-snapshot` element message.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("snapshot-max-files")
                    .nick("Snapshot files kept")
                    .blurb("The newest snapshots of this camera kept in snapshot-dir; older ones are deleted.")
                    .minimum(1)
                    .default_value(DEFAULT_SNAPSHOT_MAX_FILES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("snapshot-crop")
                    .nick("Crop snapshots")
                    .blurb("Snapshots show the object with some room around it, not the whole frame.")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("snapshot-quality")
                    .nick("Snapshot quality")
                    .blurb("JPEG quality, 1 to 100.")
                    .minimum(1)
                    .maximum(100)
                    .default_value(DEFAULT_SNAPSHOT_QUALITY)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("snapshots-dropped")
                    .nick("Snapshots dropped")
                    .blurb("Frames whose snapshots were skipped because the snapshot thread was busy.")
                    .read_only()
                    .build(),
    ]
}
