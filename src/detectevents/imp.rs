//! The `detectevents` element: an in-place BaseTransform that reads the tracked ROI metas of each
//! buffer, feeds them to the event logic (`crate::events`), attaches the frame's events and counts
//! as a custom meta and posts each event on the bus. It does no pixel work and takes only its own
//! locks, so it costs the video a few microseconds a buffer.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use super::META_NAME;
use super::outputs::{Outputs, Report};
use super::settings::{
    DEFAULT_HYSTERESIS, DEFAULT_LOST_TIME, DEFAULT_MQTT_QUEUE, DEFAULT_MQTT_TOPIC,
    DEFAULT_SNAPSHOT_MAX_FILES, DEFAULT_SNAPSHOT_QUALITY, Settings, param_specs, read_config_file,
};
use crate::events::{Counts, Event, EventTracker, Observation, parse_lines, parse_zones};
use crate::lock;
use crate::mqtt::Status;

static CAT: Lazy<gst::DebugCategory> = Lazy::new(|| {
    gst::DebugCategory::new(
        "detectevents",
        gst::DebugColorFlags::empty(),
        Some("Zones, line crossings and counts from tracked objects"),
    )
});

struct State {
    tracker: EventTracker,
    version: u64,
    info: Option<gst_video::VideoInfo>,
    epoch: Instant,
    last_counts: Option<Counts>,
    /// MQTT and snapshots, when asked for.
    outputs: Option<Arc<Outputs>>,
    /// Zones and lines as written, carried on the meta so detectoverlay can draw them.
    shapes: (String, String),
}

#[derive(Default)]
pub struct DetectEvents {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    events_posted: AtomicU64,
}

#[glib::object_subclass]
impl ObjectSubclass for DetectEvents {
    const NAME: &'static str = "GstDetectEvents";
    type Type = super::DetectEvents;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for DetectEvents {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(param_specs);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let text = || value.get::<Option<String>>().ok().flatten().unwrap_or_default();
        let optional = || {
            value
                .get::<Option<String>>()
                .ok()
                .flatten()
                .filter(|s| !s.is_empty())
        };
        let mut settings = lock(&self.settings);
        let name = pspec.name();
        // What only the outputs read (taken at the next start).
        match name {
            "camera" => settings.camera = optional(),
            "mqtt-broker" => settings.mqtt_broker = optional(),
            "mqtt-topic" => {
                settings.mqtt_topic = optional().unwrap_or_else(|| DEFAULT_MQTT_TOPIC.to_string())
            }
            "mqtt-client-id" => settings.mqtt_client_id = optional(),
            "mqtt-user" => settings.mqtt_user = optional(),
            "mqtt-password" => settings.mqtt_password = optional(),
            "mqtt-ca-file" => settings.mqtt_ca_file = optional(),
            "mqtt-queue" => settings.mqtt_queue = value.get().unwrap_or(DEFAULT_MQTT_QUEUE),
            "mqtt-detections" => settings.mqtt_detections = value.get().unwrap_or(false),
            "mqtt-snapshots" => settings.mqtt_snapshots = value.get().unwrap_or(true),
            "snapshot-dir" => settings.snapshot_dir = optional(),
            "snapshot-max-files" => {
                settings.snapshot_max_files = value.get().unwrap_or(DEFAULT_SNAPSHOT_MAX_FILES)
            }
            "snapshot-crop" => settings.snapshot_crop = value.get().unwrap_or(true),
            "snapshot-quality" => settings.snapshot_quality = value.get().unwrap_or(DEFAULT_SNAPSHOT_QUALITY),
            _ => {}
        }
        if name.starts_with("mqtt-") || name.starts_with("snapshot-") || name == "camera" {
            return;
        }
        let outcome = match name {
            "config-file" => match optional() {
                None => {
                    settings.config_file = None;
                    Ok(())
                }
                Some(path) => read_config_file(&path).map(|(zones_text, zones, lines_text, lines)| {
                    settings.config_file = Some(path);
                    settings.zones_text = zones_text;
                    settings.zones = zones;
                    settings.lines_text = lines_text;
                    settings.lines = lines;
                }),
            },
            "zones" => parse_zones(&text()).map(|zones| {
                settings.zones_text = text();
                settings.zones = zones;
            }),
            "lines" => parse_lines(&text()).map(|lines| {
                settings.lines_text = text();
                settings.lines = lines;
            }),
            "anchor" => {
                settings.anchor = value.get().unwrap_or_default();
                Ok(())
            }
            "hysteresis" => {
                settings.hysteresis = value.get().unwrap_or(DEFAULT_HYSTERESIS);
                Ok(())
            }
            "lost-time" => {
                settings.lost_time = value.get().unwrap_or(DEFAULT_LOST_TIME);
                Ok(())
            }
            "post-messages" => {
                settings.post_messages = value.get().unwrap_or(true);
                Ok(())
            }
            other => {
                gst::warning!(CAT, imp = self, "Property {other} is not writable");
                Ok(())
            }
        };
        let key = match name {
            "zones" => "zones",
            "config-file" => "config-file",
            _ => "lines",
        };
        match outcome {
            Ok(()) => {
                settings.refused.remove(key);
                settings.version += 1;
            }
            Err(reason) => {
                gst::warning!(CAT, imp = self, "Refused {name}: {reason}");
                settings.refused.insert(key, reason.clone());
                drop(settings);
                // Set while running, the user hears of it now; set before, the start fails.
                if lock(&self.state).is_some() {
                    gst::element_imp_warning!(
                        self,
                        gst::LibraryError::Settings,
                        ("Keeping the previous {}: {}", name, reason)
                    );
                }
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        // The outputs' status lives in the state, taken before the settings (lock order).
        let outputs = lock(&self.state).as_ref().and_then(|s| s.outputs.clone());
        match pspec.name() {
            "mqtt-status" => {
                return outputs
                    .map_or_else(|| "off".to_string(), |o| o.status())
                    .to_value();
            }
            "mqtt-sent" => return outputs.map_or(0, |o| o.counters().0).to_value(),
            "mqtt-dropped" => return outputs.map_or(0, |o| o.counters().1).to_value(),
            "snapshots-dropped" => {
                return outputs.map_or(0, |o| o.snapshots_dropped()).to_value();
            }
            _ => {}
        }
        let settings = lock(&self.settings);
        match pspec.name() {
            "config-file" => settings.config_file.to_value(),
            "camera" => settings.camera.to_value(),
            "mqtt-broker" => settings.mqtt_broker.to_value(),
            "mqtt-topic" => settings.mqtt_topic.to_value(),
            "mqtt-client-id" => settings.mqtt_client_id.to_value(),
            "mqtt-user" => settings.mqtt_user.to_value(),
            "mqtt-ca-file" => settings.mqtt_ca_file.to_value(),
            "mqtt-queue" => settings.mqtt_queue.to_value(),
            "mqtt-detections" => settings.mqtt_detections.to_value(),
            "mqtt-snapshots" => settings.mqtt_snapshots.to_value(),
            "snapshot-dir" => settings.snapshot_dir.to_value(),
            "snapshot-max-files" => settings.snapshot_max_files.to_value(),
            "snapshot-crop" => settings.snapshot_crop.to_value(),
            "snapshot-quality" => settings.snapshot_quality.to_value(),
            "zones" => settings.zones_text.to_value(),
            "lines" => settings.lines_text.to_value(),
            "anchor" => settings.anchor.to_value(),
            "hysteresis" => settings.hysteresis.to_value(),
            "lost-time" => settings.lost_time.to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "events" => self.events_posted.load(Ordering::Relaxed).to_value(),
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for DetectEvents {}

impl ElementImpl for DetectEvents {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Detection events",
                "Filter/Analyzer/Video",
                "Turns tracked GstVideoRegionOfInterestMeta objects into events: zones entered and left, \
                 lines crossed in or out, live counts per zone and class, object start and end; posted \
                 as element messages, attached as a DetectEventsMeta custom meta and, with mqtt-broker \
                 set, published over MQTT with JPEG snapshots, never holding up the video",
                "asyncdetect developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: Lazy<Vec<gst::PadTemplate>> = Lazy::new(|| {
            crate::pads::same_caps_templates(&gst_video::VideoCapsBuilder::new().any_features().build())
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for DetectEvents {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        if let Some((name, reason)) = settings.refused.iter().next() {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("Invalid {}: {}", name, reason)
            ));
        }
        let output_settings = settings
            .outputs(&self.obj().name())
            .map_err(|why| gst::error_msg!(gst::LibraryError::Settings, ("Invalid MQTT broker: {}", why)))?;
        let outputs = if output_settings.broker.is_some() || output_settings.snapshot_dir.is_some() {
            let outputs = Outputs::start(output_settings, self.reporter())
                .map_err(|why| gst::error_msg!(gst::LibraryError::Settings, ("{}", why)))?;
            Some(Arc::new(outputs))
        } else {
            None
        };
        self.events_posted.store(0, Ordering::Relaxed);
        *lock(&self.state) = Some(State {
            tracker: settings.tracker(),
            version: settings.version,
            info: None,
            epoch: Instant::now(),
            last_counts: None,
            outputs,
            shapes: (settings.zones_text.clone(), settings.lines_text.clone()),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let state = lock(&self.state).take();
        if let Some(outputs) = state.and_then(|s| s.outputs) {
            // Bounded: a broker that is away is left behind after a short wait.
            outputs.stop();
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "Unsupported caps {incaps:?}"))?;
        if let Some(state) = lock(&self.state).as_mut() {
            state.info = Some(info);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) = event.view()
            && let Some(state) = lock(&self.state).as_mut()
        {
            // Another part of the stream: the objects seen so far are gone (totals stay).
            state.tracker.reset();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buffer: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Judged {
            events,
            counts,
            counts_changed,
            post_messages,
            observations,
            outputs,
            previous,
            info,
            shapes,
        } = {
            // Lock order: state, then settings (set_property never holds settings while it takes
            // state).
            let mut guard = lock(&self.state);
            let Some(state) = guard.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            let post_messages = {
                let settings = lock(&self.settings);
                if state.version != settings.version {
                    state.tracker = settings.tracker();
                    state.version = settings.version;
                    state.last_counts = None;
                    state.shapes = (settings.zones_text.clone(), settings.lines_text.clone());
                }
                settings.post_messages
            };
            let size = state.info.as_ref().map(|i| (i.width(), i.height()));
            let observations = observations(buffer, size);
            let at = buffer
                .pts()
                .map_or_else(|| state.epoch.elapsed().as_secs_f64(), |pts| pts.seconds_f64());
            let events = state.tracker.update(at, &observations);
            let counts = state.tracker.counts();
            let changed = state.last_counts.as_ref() != Some(&counts);
            let previous = if changed {
                state.last_counts.replace(counts.clone())
            } else {
                None
            };
            let outputs = state.outputs.clone();
            // The frame's description only matters to the outputs.
            let info = outputs.as_ref().and(state.info.clone());
            Judged {
                events,
                counts,
                counts_changed: changed,
                post_messages,
                observations,
                outputs,
                previous,
                info,
                shapes: state.shapes.clone(),
            }
        };
        if let Some(outputs) = &outputs {
            let counts = counts_changed.then_some((previous.as_ref(), &counts));
            outputs.frame(buffer, info.as_ref(), &events, &observations, counts);
        }
        let pts = buffer.pts();
        let event_structures: Vec<gst::Structure> = events.iter().map(|e| event_structure(e, pts)).collect();
        if let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, META_NAME) {
            let structure = meta.mut_structure();
            structure.set(
                "events",
                gst::List::new(event_structures.iter().map(|s| s.to_send_value())),
            );
            let (objects, zones, lines) = count_lists(&counts);
            structure.set("objects", objects);
            structure.set("zones", zones);
            structure.set("lines", lines);
            structure.set("zone-shapes", shapes.0.as_str());
            structure.set("line-shapes", shapes.1.as_str());
        }
        self.events_posted
            .fetch_add(event_structures.len() as u64, Ordering::Relaxed);
        if post_messages {
            let element = self.obj();
            for structure in event_structures {
                let _ =
                    element.post_message(gst::message::Element::builder(structure).src(&*element).build());
            }
            if counts_changed {
                let (objects, zones, lines) = count_lists(&counts);
                let mut structure = gst::Structure::builder("detectevents-counts")
                    .field("objects", objects)
                    .field("zones", zones)
                    .field("lines", lines)
                    .build();
                if let Some(pts) = pts {
                    structure.set("timestamp", pts.nseconds());
                }
                let _ =
                    element.post_message(gst::message::Element::builder(structure).src(&*element).build());
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// What one buffer's objects came to, taken out of the state lock.
struct Judged {
    events: Vec<Event>,
    counts: Counts,
    counts_changed: bool,
    post_messages: bool,
    observations: Vec<Observation>,
    outputs: Option<Arc<Outputs>>,
    /// The counts before this buffer, when they changed.
    previous: Option<Counts>,
    info: Option<gst_video::VideoInfo>,
    shapes: (String, String),
}

impl DetectEvents {
    /// What the outputs' threads report, as messages from the element.
    fn reporter(&self) -> Arc<dyn Fn(Report) + Send + Sync> {
        let element = self.obj().downgrade();
        let snapshot_failure_told = AtomicBool::new(false);
        Arc::new(move |report| {
            let Some(element) = element.upgrade() else { return };
            match report {
                Report::Broker(url, Status::Connected) => {
                    gst::element_info!(
                        element,
                        gst::ResourceError::OpenWrite,
                        ("Connected to MQTT broker {}", url)
                    )
                }
                Report::Broker(url, Status::Unreachable(why)) => gst::element_warning!(
                    element,
                    gst::ResourceError::OpenWrite,
                    (
                        "MQTT broker {} unreachable ({}): events wait in the queue and the connection is retried",
                        url,
                        why
                    )
                ),
                Report::Broker(url, Status::Refused(why)) => gst::element_error!(
                    element,
                    gst::ResourceError::NotAuthorized,
                    ("MQTT broker {} refused the connection: {}", url, why)
                ),
                Report::Snapshot(made) => {
                    let mut structure = gst::Structure::builder("detectevents-snapshot")
                        .field("object-id", made.object_id)
                        .field("label", made.label.as_str())
                        .field("event", made.event)
                        .field("bytes", made.bytes as u64)
                        .build();
                    if let Some(location) = &made.location {
                        structure.set("location", location.to_string_lossy().as_ref());
                    }
                    let _ =
                        element.post_message(gst::message::Element::builder(structure).src(&element).build());
                }
                Report::SnapshotFailed(why) => {
                    if !snapshot_failure_told.swap(true, Ordering::Relaxed) {
                        gst::element_warning!(
                            element,
                            gst::StreamError::Encode,
                            ("Snapshot failed: {}", why)
                        );
                    }
                }
            }
        })
    }
}

/// The tracked objects on a buffer (ROI metas with an object id), with normalised boxes.
fn observations(buffer: &gst::BufferRef, size: Option<(u32, u32)>) -> Vec<Observation> {
    crate::pads::read_regions(buffer)
        .into_iter()
        .filter_map(|region| {
            let id = u32::try_from(region.tracking_id?).ok()?;
            // Without normalised corners, the pixel rectangle needs the frame's size.
            let bbox = match (region.normalized, size) {
                (Some(corners), _) => corners,
                (None, Some((width, height))) if width > 0 && height > 0 => region.corners(width, height),
                _ => return None,
            };
            Some(Observation {
                id,
                label: region.label().to_string(),
                confidence: region.confidence.unwrap_or(0.0),
                bbox,
            })
        })
        .collect()
}

fn nanos(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1e9).round() as u64
}

/// One event as a `detectevents` structure (bus message and meta).
fn event_structure(event: &Event, pts: Option<gst::ClockTime>) -> gst::Structure {
    let (id, label) = event.object();
    let builder = gst::Structure::builder("detectevents")
        .field("event", event.name())
        .field("object-id", id)
        .field("label", label);
    let mut structure = match event {
        Event::Start { confidence, .. } => builder.field("confidence", *confidence),
        Event::End {
            first_seen,
            last_seen,
            best_confidence,
            ..
        } => builder
            .field("first-seen", nanos(*first_seen))
            .field("last-seen", nanos(*last_seen))
            .field("best-confidence", *best_confidence),
        Event::Enter { zone, .. } => builder.field("zone", zone.as_str()),
        Event::Leave { zone, dwell, .. } => {
            builder.field("zone", zone.as_str()).field("dwell", nanos(*dwell))
        }
        Event::Cross { line, direction, .. } => builder
            .field("line", line.as_str())
            .field("direction", direction.as_str()),
    }
    .build();
    if let Some(pts) = pts {
        structure.set("timestamp", pts.nseconds());
    }
    structure
}

/// The counts as lists of structures: objects alive per label `{label, count}`, per zone and
/// label `{zone, label, count}`, per line `{line, in, out}`.
fn count_lists(counts: &Counts) -> (gst::List, gst::List, gst::List) {
    let objects = counts.objects.iter().map(|(label, count)| {
        gst::Structure::builder("object-count")
            .field("label", label.as_str())
            .field("count", *count)
            .build()
            .to_send_value()
    });
    let zones = counts.zones.iter().flat_map(|(zone, labels)| {
        labels.iter().map(move |(label, count)| {
            gst::Structure::builder("zone-count")
                .field("zone", zone.as_str())
                .field("label", label.as_str())
                .field("count", *count)
                .build()
                .to_send_value()
        })
    });
    let lines = counts.lines.iter().map(|(line, (inward, outward))| {
        gst::Structure::builder("line-count")
            .field("line", line.as_str())
            .field("in", *inward)
            .field("out", *outward)
            .build()
            .to_send_value()
    });
    (
        gst::List::new(objects),
        gst::List::new(zones),
        gst::List::new(lines),
    )
}
