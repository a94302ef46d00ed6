//! Where `detectevents` sends what it sees besides the bus: an MQTT broker (`crate::mqtt`, topics
//! and payloads from `crate::publish`) and snapshots, JPEG pictures of the frames with object
//! events, made on threads of their own, published and/or written to a directory.
//!
//! The streaming thread only queues: MQTT messages on the publisher's bounded queue, snapshot jobs
//! (a reference to the frame, no copy of its pixels) in the snapshot threads' one-slot mailbox
//! (`snapshots.rs`). Both drop and count when full.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::snapshots::{SnapshotJob, SnapshotMade, Snapshots};
use crate::events::{Counts, Event, Observation};
use crate::export::{FrameJson, ObjectJson, Resolution};
use crate::lock;
use crate::mqtt::{BrokerConfig, Delivery, Publisher, Status};
use crate::publish::{Topics, count_messages, event_json, wants_snapshot};

/// How long a stop waits for queued messages to reach the broker.
const STOP_FLUSH: Duration = Duration::from_secs(2);

/// What the user asked for, read at start.
#[derive(Debug, Clone, Default)]
pub struct OutputSettings {
    pub camera: String,
    pub broker: Option<BrokerConfig>,
    pub topic_prefix: String,
    pub detections: bool,
    pub mqtt_snapshots: bool,
    pub snapshot_dir: Option<PathBuf>,
    pub snapshot_max_files: u32,
    pub snapshot_crop: bool,
    pub snapshot_quality: u8,
}

impl OutputSettings {
    pub fn wants_snapshots(&self) -> bool {
        self.snapshot_dir.is_some() || (self.broker.is_some() && self.mqtt_snapshots)
    }
}

/// What the outputs report, from their own threads.
pub enum Report {
    /// The broker's URL and what happened.
    Broker(String, Status),
    Snapshot(SnapshotMade),
    SnapshotFailed(String),
}

/// The running outputs of one element.
pub struct Outputs {
    settings: OutputSettings,
    topics: Topics,
    publisher: Option<Publisher>,
    snapshots: Option<Snapshots>,
    status: Arc<Mutex<String>>,
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Outputs {
    /// Connects (in the background) and starts the snapshot thread. `report` is called from the
    /// outputs' threads.
    pub fn start(
        settings: OutputSettings,
        report: Arc<dyn Fn(Report) + Send + Sync>,
    ) -> Result<Outputs, String> {
        let topics = Topics::new(&settings.topic_prefix, &settings.camera);
        let status = Arc::new(Mutex::new(if settings.broker.is_some() {
            "connecting".to_string()
        } else {
            "off".to_string()
        }));
        let publisher = match &settings.broker {
            None => None,
            Some(broker) => {
                let mut broker = broker.clone();
                broker.last_will = Some((topics.available(), "offline".into()));
                let status = status.clone();
                let report = report.clone();
                let url = broker.url.clone();
                let on_status = Box::new(move |s: Status| {
                    *lock(&status) = match &s {
                        Status::Connected => "connected".to_string(),
                        Status::Unreachable(why) => format!("unreachable: {why}"),
                        Status::Refused(why) => format!("refused: {why}"),
                    };
                    report(Report::Broker(url.clone(), s));
                });
                let publisher = Publisher::start(&broker, on_status)?;
                publisher.publish(&topics.available(), b"online".to_vec(), Delivery::State);
                Some(publisher)
            }
        };
        if let Some(dir) = &settings.snapshot_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot make the snapshot directory '{}': {e}", dir.display()))?;
        }
        let snapshots = if settings.wants_snapshots() {
            let sender = publisher
                .as_ref()
                .filter(|_| settings.mqtt_snapshots)
                .map(Publisher::sender);
            Some(Snapshots::start(&settings, topics.clone(), sender, report)?)
        } else {
            None
        };
        let outputs = Outputs {
            topics,
            publisher,
            snapshots,
            status,
            settings,
        };
        Ok(outputs)
    }

    pub fn status(&self) -> String {
        lock(&self.status).clone()
    }

    pub fn counters(&self) -> (u64, u64) {
        self.publisher.as_ref().map_or((0, 0), |p| {
            let counters = p.counters();
            (counters.sent, counters.dropped)
        })
    }

    /// Sends one frame's events, changed counts and (if asked) detections, and queues its
    /// snapshots. Called on the streaming thread: only queues.
    pub fn frame(
        &self,
        buffer: &gst::BufferRef,
        info: Option<&gst_video::VideoInfo>,
        events: &[Event],
        observations: &[Observation],
        counts: Option<(Option<&Counts>, &Counts)>,
    ) {
        let stream_seconds = buffer.pts().map(|pts| pts.seconds_f64());
        if let Some(publisher) = &self.publisher {
            let now = unix_now();
            for event in events {
                let payload = event_json(event, self.topics.camera(), stream_seconds, now);
                publisher.publish(&self.topics.events(), payload, Delivery::Event);
            }
            if let Some((before, after)) = counts {
                for (topic, value) in count_messages(&self.topics, before, after) {
                    publisher.publish(&topic, value.into_bytes(), Delivery::State);
                }
            }
            if self.settings.detections
                && let Some(info) = info
            {
                let (width, height) = (info.width(), info.height());
                let objects: Vec<ObjectJson> = crate::pads::read_regions(buffer)
                    .iter()
                    .map(|region| ObjectJson::from_region(region, width, height))
                    .collect();
                let line = FrameJson {
                    resolution: Resolution { width, height },
                    source: Some(self.topics.camera().to_string()),
                    timestamp: buffer.pts().map(|t| t.nseconds()),
                    objects,
                }
                .to_line();
                publisher.publish(&self.topics.detections(), line.into_bytes(), Delivery::Stream);
            }
        }
        self.queue_snapshots(buffer, info, events, observations);
    }

    fn queue_snapshots(
        &self,
        buffer: &gst::BufferRef,
        info: Option<&gst_video::VideoInfo>,
        events: &[Event],
        observations: &[Observation],
    ) {
        let Some(info) = info else { return };
        let objects: Vec<_> = events
            .iter()
            .filter(|e| wants_snapshot(e))
            .filter_map(|event| {
                let (id, label) = event.object();
                let seen = observations.iter().find(|o| o.id == id)?;
                Some((id, label.to_string(), event.name(), seen.bbox))
            })
            .collect();
        if objects.is_empty() {
            return;
        }
        if let Some(snapshots) = &self.snapshots {
            // A new reference to the same memory: no pixels are copied here.
            snapshots.offer(|| SnapshotJob {
                buffer: buffer.copy(),
                info: info.clone(),
                objects,
            });
        }
    }

    /// Frames whose snapshots were skipped because the snapshot thread was busy.
    pub fn snapshots_dropped(&self) -> u64 {
        self.snapshots.as_ref().map_or(0, Snapshots::dropped)
    }

    /// Marks the camera offline, lets the snapshot thread finish what is queued and sends what the
    /// broker has not had yet, each within a bound.
    pub fn stop(&self) {
        if let Some(snapshots) = &self.snapshots {
            snapshots.stop(STOP_FLUSH);
        }
        if let Some(publisher) = &self.publisher {
            publisher.publish(&self.topics.available(), b"offline".to_vec(), Delivery::State);
            publisher.stop(STOP_FLUSH);
        }
    }
}
