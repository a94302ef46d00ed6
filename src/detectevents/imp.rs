//! The `detectevents` element: an in-place BaseTransform that reads the tracked ROI metas of each
//! buffer, feeds them to the event logic (`crate::events`), attaches the frame's events and counts
//! as a custom meta and posts each event on the bus. It does no pixel work and takes only its own
//! locks, so it costs the video a few microseconds a buffer.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use super::{DetectEventsAnchor, META_NAME};
use crate::events::{Anchor, Counts, Event, EventTracker, Line, Observation, Zone, parse_lines, parse_zones};
use crate::lock;

static CAT: Lazy<gst::DebugCategory> = Lazy::new(|| {
    gst::DebugCategory::new(
        "detectevents",
        gst::DebugColorFlags::empty(),
        Some("Zones, line crossings and counts from tracked objects"),
    )
});

const DEFAULT_HYSTERESIS: f64 = 0.02;
const DEFAULT_LOST_TIME: u64 = 2_000_000_000;

#[derive(Debug, Clone)]
struct Settings {
    zones_text: String,
    lines_text: String,
    zones: Vec<Zone>,
    lines: Vec<Line>,
    anchor: DetectEventsAnchor,
    hysteresis: f64,
    lost_time: u64,
    post_messages: bool,
    /// Bumped when zones, lines or how objects are judged change: the event state starts over.
    version: u64,
    /// Values refused before the element could post a warning: the start fails naming them.
    refused: BTreeMap<&'static str, String>,
}

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
        }
    }
}

impl Settings {
    fn tracker(&self) -> EventTracker {
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
}

struct State {
    tracker: EventTracker,
    version: u64,
    info: Option<gst_video::VideoInfo>,
    epoch: Instant,
    last_counts: Option<Counts>,
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
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
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
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let text = || value.get::<Option<String>>().ok().flatten().unwrap_or_default();
        let mut settings = lock(&self.settings);
        let name = pspec.name();
        let outcome = match name {
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
        let key = if name == "zones" { "zones" } else { "lines" };
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
        let settings = lock(&self.settings);
        match pspec.name() {
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
                 as element messages and attached as a DetectEventsMeta custom meta",
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
                ["Invalid {}: {}", name, reason]
            ));
        }
        self.events_posted.store(0, Ordering::Relaxed);
        *lock(&self.state) = Some(State {
            tracker: settings.tracker(),
            version: settings.version,
            info: None,
            epoch: Instant::now(),
            last_counts: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        lock(&self.state).take();
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
        let (events, counts, counts_changed, post_messages) = {
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
            if changed {
                state.last_counts = Some(counts.clone());
            }
            (events, counts, changed, post_messages)
        };
        let pts = buffer.pts();
        let event_structures: Vec<gst::Structure> = events.iter().map(|e| event_structure(e, pts)).collect();
        if let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, META_NAME) {
            let structure = meta.mut_structure();
            structure.set(
                "events",
                gst::List::new(event_structures.iter().map(|s| s.to_send_value())),
            );
            let (zones, lines) = count_lists(&counts);
            structure.set("zones", zones);
            structure.set("lines", lines);
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
                let (zones, lines) = count_lists(&counts);
                let mut structure = gst::Structure::builder("detectevents-counts")
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
    let builder = gst::Structure::builder("detectevents");
    let mut structure = match event {
        Event::Start {
            id,
            label,
            confidence,
        } => builder
            .field("event", "start")
            .field("object-id", *id)
            .field("label", label.as_str())
            .field("confidence", *confidence),
        Event::End {
            id,
            label,
            first_seen,
            last_seen,
            best_confidence,
        } => builder
            .field("event", "end")
            .field("object-id", *id)
            .field("label", label.as_str())
            .field("first-seen", nanos(*first_seen))
            .field("last-seen", nanos(*last_seen))
            .field("best-confidence", *best_confidence),
        Event::Enter { zone, id, label } => builder
            .field("event", "enter")
            .field("zone", zone.as_str())
            .field("object-id", *id)
            .field("label", label.as_str()),
        Event::Leave {
            zone,
            id,
            label,
            dwell,
        } => builder
            .field("event", "leave")
            .field("zone", zone.as_str())
            .field("object-id", *id)
            .field("label", label.as_str())
            .field("dwell", nanos(*dwell)),
        Event::Cross {
            line,
            id,
            label,
            direction,
        } => builder
            .field("event", "cross")
            .field("line", line.as_str())
            .field("object-id", *id)
            .field("label", label.as_str())
            .field("direction", direction.as_str()),
    }
    .build();
    if let Some(pts) = pts {
        structure.set("timestamp", pts.nseconds());
    }
    structure
}

/// The counts as lists of structures: per zone and label `{zone, label, count}`, per line
/// `{line, in, out}`.
fn count_lists(counts: &Counts) -> (gst::List, gst::List) {
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
    (gst::List::new(zones), gst::List::new(lines))
}
