//! Where `detectevents` sends what it sees besides the bus: an MQTT broker (`crate::mqtt`, topics
//! and payloads from `crate::publish`) and snapshots, JPEG pictures of the frames with object
//! events, made on a thread of their own, published and/or written to a directory.
//!
//! The streaming thread only queues: MQTT messages on the publisher's bounded queue, snapshot jobs
//! (a reference to the frame, no copy of its pixels) on a queue of `SNAPSHOT_QUEUE`. Both drop
//! and count when full.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::convert::FrameConverter;
use crate::draw::TextRenderer;
use crate::events::{Counts, Event, Observation};
use crate::export::{FrameJson, ObjectJson, Resolution};
use crate::geometry::{PixelRect, Placement};
use crate::lock;
use crate::mqtt::{BrokerConfig, Delivery, MessageSender, Publisher, Status};
use crate::preprocess::ChannelOrder;
use crate::publish::{Topics, count_messages, event_json, wants_snapshot};
use crate::snapshot::Picture;

/// Frames waiting for their snapshots; more are dropped and counted.
const SNAPSHOT_QUEUE: usize = 4;
/// Snapshots are made from the frame shrunk to at most this on its longer side.
const SNAPSHOT_MAX_SIDE: u32 = 1920;
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
    fn wants_snapshots(&self) -> bool {
        self.snapshot_dir.is_some() || (self.broker.is_some() && self.mqtt_snapshots)
    }
}

/// A snapshot made (reported for a bus message).
#[derive(Debug, Clone)]
pub struct SnapshotMade {
    pub object_id: u32,
    pub label: String,
    pub event: &'static str,
    pub bytes: usize,
    pub location: Option<PathBuf>,
}

/// What the outputs report, from their own threads.
pub enum Report {
    /// The broker's URL and what happened.
    Broker(String, Status),
    Snapshot(SnapshotMade),
    SnapshotFailed(String),
}

struct SnapshotJob {
    buffer: gst::Buffer,
    info: gst_video::VideoInfo,
    /// Per object event: id, label, event name, normalised box.
    objects: Vec<(u32, String, &'static str, [f64; 4])>,
}

/// The running outputs of one element.
pub struct Outputs {
    settings: OutputSettings,
    topics: Topics,
    publisher: Option<Publisher>,
    snapshots: Mutex<Option<SyncSender<SnapshotJob>>>,
    snapshot_worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub snapshots_dropped: AtomicU64,
    status: Arc<Mutex<String>>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Start { .. } => "start",
        Event::End { .. } => "end",
        Event::Enter { .. } => "enter",
        Event::Leave { .. } => "leave",
        Event::Cross { .. } => "cross",
    }
}

fn event_object(event: &Event) -> (u32, &str) {
    match event {
        Event::Start { id, label, .. }
        | Event::End { id, label, .. }
        | Event::Enter { id, label, .. }
        | Event::Leave { id, label, .. }
        | Event::Cross { id, label, .. } => (*id, label),
    }
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
        let mut outputs = Outputs {
            topics,
            publisher,
            snapshots: Mutex::new(None),
            snapshot_worker: Mutex::new(None),
            snapshots_dropped: AtomicU64::new(0),
            status,
            settings,
        };
        if outputs.settings.wants_snapshots() {
            let (sender, receiver) = sync_channel(SNAPSHOT_QUEUE);
            let worker = SnapshotWorker {
                settings: outputs.settings.clone(),
                topics: outputs.topics.clone(),
                sender: outputs
                    .publisher
                    .as_ref()
                    .filter(|_| outputs.settings.mqtt_snapshots)
                    .map(Publisher::sender),
                report,
            };
            let handle = std::thread::Builder::new()
                .name("snapshots".into())
                .spawn(move || worker.run(receiver))
                .map_err(|e| format!("cannot start the snapshot thread: {e}"))?;
            outputs.snapshots = Mutex::new(Some(sender));
            outputs.snapshot_worker = Mutex::new(Some(handle));
        }
        Ok(outputs)
    }

    pub fn status(&self) -> String {
        lock(&self.status).clone()
    }

    pub fn counters(&self) -> (u64, u64) {
        self.publisher
            .as_ref()
            .map_or((0, 0), |p| (p.counters().sent, p.counters().dropped))
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
                let (id, label) = event_object(event);
                let seen = observations.iter().find(|o| o.id == id)?;
                Some((id, label.to_string(), event_name(event), seen.bbox))
            })
            .collect();
        if objects.is_empty() {
            return;
        }
        let Some(sender) = lock(&self.snapshots).clone() else {
            return;
        };
        // A new reference to the same memory: no pixels are copied here.
        let job = SnapshotJob {
            buffer: buffer.copy(),
            info: info.clone(),
            objects,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = sender.try_send(job) {
            self.snapshots_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks the camera offline, lets the snapshot thread finish what is queued and sends what the
    /// broker has not had yet, each within a bound.
    pub fn stop(&self) {
        lock(&self.snapshots).take();
        if let Some(handle) = lock(&self.snapshot_worker).take() {
            let deadline = std::time::Instant::now() + STOP_FLUSH;
            while !handle.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        if let Some(publisher) = &self.publisher {
            publisher.publish(&self.topics.available(), b"offline".to_vec(), Delivery::State);
            publisher.stop(STOP_FLUSH);
        }
    }
}

struct SnapshotWorker {
    settings: OutputSettings,
    topics: Topics,
    /// Where snapshots are published, when they are.
    sender: Option<MessageSender>,
    report: Arc<dyn Fn(Report) + Send + Sync>,
}

impl SnapshotWorker {
    fn run(self, jobs: Receiver<SnapshotJob>) {
        let mut converter: Option<(u32, u32, FrameConverter)> = None;
        let mut text = TextRenderer::new();
        while let Ok(job) = jobs.recv() {
            let (width, height) = (job.info.width(), job.info.height());
            let scale = (SNAPSHOT_MAX_SIDE as f64 / width.max(height).max(1) as f64).min(1.0);
            let (out_w, out_h) = (
                ((width as f64 * scale).round() as u32).max(1),
                ((height as f64 * scale).round() as u32).max(1),
            );
            if converter
                .as_ref()
                .is_none_or(|(w, h, _)| (*w, *h) != (out_w, out_h))
            {
                converter = Some((out_w, out_h, FrameConverter::new(ChannelOrder::Rgb, out_w, out_h)));
            }
            let Some((_, _, frame_converter)) = converter.as_mut() else {
                continue;
            };
            let whole = |w: u32, h: u32| PixelRect {
                x: 0,
                y: 0,
                width: w,
                height: h,
            };
            let placement = Placement {
                source: whole(width, height),
                destination: whole(out_w, out_h),
                input_width: out_w,
                input_height: out_h,
                frame_width: width,
                frame_height: height,
            };
            let picture = match frame_converter.convert(job.buffer, &job.info, &placement) {
                Ok((frame, stride)) => {
                    let Ok(data) = frame.plane_data(0) else { continue };
                    let row = out_w as usize * 3;
                    let mut rgb = Vec::with_capacity(row * out_h as usize);
                    for y in 0..out_h as usize {
                        rgb.extend_from_slice(&data[y * stride..y * stride + row]);
                    }
                    Picture {
                        width: out_w,
                        height: out_h,
                        rgb,
                    }
                }
                Err(why) => {
                    (self.report)(Report::SnapshotFailed(why));
                    continue;
                }
            };
            for (id, label, event, bbox) in job.objects {
                self.snapshot(&picture, &mut text, id, &label, event, bbox);
            }
        }
    }

    fn snapshot(
        &self,
        picture: &Picture,
        text: &mut TextRenderer,
        id: u32,
        label: &str,
        event: &'static str,
        bbox: [f64; 4],
    ) {
        let (mut image, corners) = if self.settings.snapshot_crop {
            picture.crop_around(bbox)
        } else {
            (picture.clone(), bbox)
        };
        image.draw_box(corners, &format!("{label} #{id}"), text);
        let jpeg = match image.jpeg(self.settings.snapshot_quality) {
            Ok(jpeg) => jpeg,
            Err(why) => {
                (self.report)(Report::SnapshotFailed(why));
                return;
            }
        };
        let mut location = None;
        if let Some(dir) = &self.settings.snapshot_dir {
            let name = format!(
                "{}-{:013}-{id}-{event}.jpg",
                self.topics.camera(),
                (unix_now() * 1000.0) as u64
            );
            let path = dir.join(name);
            match std::fs::write(&path, &jpeg) {
                Ok(()) => {
                    location = Some(path);
                    prune(
                        dir,
                        self.topics.camera(),
                        self.settings.snapshot_max_files as usize,
                    );
                }
                Err(e) => (self.report)(Report::SnapshotFailed(format!(
                    "cannot write snapshot '{}': {e}",
                    path.display()
                ))),
            }
        }
        let bytes = jpeg.len();
        if let Some(sender) = &self.sender {
            sender.publish(&self.topics.snapshot(label), jpeg, Delivery::State);
        }
        (self.report)(Report::Snapshot(SnapshotMade {
            object_id: id,
            label: label.to_string(),
            event,
            bytes,
            location,
        }));
    }
}

/// Keeps the newest `keep` snapshots of `camera` in `dir` (names sort by time).
fn prune(dir: &Path, camera: &str, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{camera}-");
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".jpg"))
        })
        .collect();
    if names.len() <= keep {
        return;
    }
    names.sort();
    for old in &names[..names.len() - keep] {
        let _ = std::fs::remove_file(old);
    }
}
