//! The `detectexport` element: a pass-through BaseTransform feeding a writer thread through a
//! bounded queue. Lines that do not fit in the queue are dropped and counted, never waited for.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use once_cell::sync::Lazy;

use crate::export::{FrameJson, ObjectJson, Resolution};
use crate::lock;

static CAT: Lazy<gst::DebugCategory> = Lazy::new(|| {
    gst::DebugCategory::new(
        "detectexport",
        gst::DebugColorFlags::empty(),
        Some("Writes detections as JSON Lines"),
    )
});

const DEFAULT_MAX_QUEUE: u32 = 1024;
const DEFAULT_NEW_RESULTS_ONLY: bool = false;
/// How long EOS waits for the writer to drain before giving up (a stuck disk must not hang EOS).
const EOS_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long starting waits for a reader when `location` is a FIFO (opening one for writing
/// otherwise blocks until somebody reads, which would hang the state change forever).
const FIFO_READER_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
struct Settings {
    location: Option<String>,
    source: Option<String>,
    new_results_only: bool,
    max_queue: u32,
    append: bool,
}

enum Command {
    Line(String),
    /// Write out everything queued, then answer.
    Drain(SyncSender<()>),
}

struct State {
    sender: Option<SyncSender<Command>>,
    writer: Option<std::thread::JoinHandle<()>>,
    info: Option<gst_video::VideoInfo>,
    last_objects: Option<String>,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
pub struct DetectExport {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    counters: Arc<Counters>,
}

fn open_output(location: &Option<String>, append: bool) -> std::io::Result<Box<dyn Write + Send>> {
    use std::os::unix::fs::FileTypeExt;
    match location.as_deref() {
        None | Some("-") => Ok(Box::new(std::io::stdout())),
        Some(path) if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo()) => {
            Ok(Box::new(open_fifo_for_writing(path)?))
        }
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.create(true);
            if append {
                options.append(true);
            } else {
                options.write(true).truncate(true);
            }
            Ok(Box::new(options.open(path)?))
        }
    }
}

/// Opens a FIFO for writing once a reader has it open, waiting at most [`FIFO_READER_WAIT`]; the
/// file is then switched back to blocking writes (the writer thread may block, the stream not).
fn open_fifo_for_writing(path: &str) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let deadline = std::time::Instant::now() + FIFO_READER_WAIT;
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => {
                // SAFETY: fcntl on a descriptor this function owns.
                let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
                // SAFETY: as above.
                if flags < 0
                    || unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                return Ok(file);
            }
            // ENXIO: no reader yet.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err(std::io::Error::other(format!(
                    "it is a FIFO and nobody opened it for reading within {} s",
                    FIFO_READER_WAIT.as_secs()
                )));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The writer thread: writes lines as they come and flushes whenever the queue runs empty, so a
/// reader tailing the file sees each line promptly.
fn write_lines(
    output: Box<dyn Write + Send>,
    commands: Receiver<Command>,
    counters: Arc<Counters>,
    element: glib::WeakRef<super::DetectExport>,
    location: String,
) {
    let mut output = std::io::BufWriter::new(output);
    let mut failed = false;
    let report = |e: std::io::Error| {
        if let Some(element) = element.upgrade() {
            gst::element_error!(
                element,
                gst::ResourceError::Write,
                ("Could not write to {}: {}", location, e)
            );
        }
    };
    while let Ok(command) = commands.recv() {
        let mut pending = Some(command);
        while let Some(command) = pending.take() {
            match command {
                Command::Line(line) if !failed => {
                    if let Err(e) = writeln!(output, "{line}") {
                        failed = true;
                        report(e);
                    } else {
                        counters.written.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Command::Line(_) => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Command::Drain(done) => {
                    if !failed && let Err(e) = output.flush() {
                        failed = true;
                        report(e);
                    }
                    let _ = done.send(());
                }
            }
            pending = commands.try_recv().ok();
        }
        if !failed && let Err(e) = output.flush() {
            failed = true;
            report(e);
        }
    }
    let _ = output.flush();
}

impl DetectExport {
    /// Sends a drain request and waits (bounded) until everything queued is written.
    fn drain(&self) {
        let sender = lock(&self.state).as_ref().and_then(|s| s.sender.clone());
        let Some(sender) = sender else { return };
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let deadline = Instant::now() + EOS_DRAIN_TIMEOUT;
        let mut command = Command::Drain(done_tx);
        loop {
            match sender.try_send(command) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    command = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => {
                    gst::warning!(CAT, imp = self, "The writer did not take the EOS drain request");
                    return;
                }
            }
        }
        if done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_err()
        {
            gst::warning!(
                CAT,
                imp = self,
                "The writer did not drain within {EOS_DRAIN_TIMEOUT:?}"
            );
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for DetectExport {
    const NAME: &'static str = "GstDetectExport";
    type Type = super::DetectExport;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for DetectExport {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: Lazy<Vec<glib::ParamSpec>> = Lazy::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb(
                        "File to write JSON Lines to (created, or truncated unless `append`). Unset or \"-\": \
                         standard output. A FIFO must get a reader within 5 s of starting.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("source")
                    .nick("Source name")
                    .blurb("A name for the stream (a camera name), written as \"source\" in every line.")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("append")
                    .nick("Append")
                    .blurb("Add lines to the end of an existing file instead of replacing it (restarted 24/7 pipelines).")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("new-results-only")
                    .nick("New results only")
                    .blurb("Write a line only when the objects differ from the last line written, not for every buffer.")
                    .default_value(DEFAULT_NEW_RESULTS_ONLY)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-queue")
                    .nick("Maximum queue")
                    .blurb(
                        "Lines waiting for the writer thread; when the output is slower than the video, \
                         further lines are dropped (and counted in `dropped`) instead of holding up the stream.",
                    )
                    .minimum(1)
                    .maximum(1_000_000)
                    .default_value(DEFAULT_MAX_QUEUE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("written")
                    .nick("Lines written")
                    .blurb("Lines written since the element started.")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("dropped")
                    .nick("Lines dropped")
                    .blurb("Lines dropped because the output could not keep up.")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn constructed(&self) {
        self.parent_constructed();
        lock(&self.settings).max_queue = DEFAULT_MAX_QUEUE;
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let text = || {
            value
                .get::<Option<String>>()
                .ok()
                .flatten()
                .filter(|s| !s.is_empty())
        };
        let mut settings = lock(&self.settings);
        match pspec.name() {
            "location" => settings.location = text(),
            "source" => settings.source = text(),
            "new-results-only" => settings.new_results_only = value.get().unwrap_or(DEFAULT_NEW_RESULTS_ONLY),
            "max-queue" => settings.max_queue = value.get().unwrap_or(DEFAULT_MAX_QUEUE),
            "append" => settings.append = value.get().unwrap_or(false),
            other => gst::warning!(CAT, imp = self, "Property {other} is not writable"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "location" => settings.location.to_value(),
            "source" => settings.source.to_value(),
            "new-results-only" => settings.new_results_only.to_value(),
            "max-queue" => settings.max_queue.to_value(),
            "append" => settings.append.to_value(),
            "written" => self.counters.written.load(Ordering::Relaxed).to_value(),
            "dropped" => self.counters.dropped.load(Ordering::Relaxed).to_value(),
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for DetectExport {}

impl ElementImpl for DetectExport {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: Lazy<gst::subclass::ElementMetadata> = Lazy::new(|| {
            gst::subclass::ElementMetadata::new(
                "Detection exporter",
                "Filter/Analyzer/Video",
                "Writes the GstVideoRegionOfInterestMeta of every buffer as JSON Lines (DL Streamer \
                 gvametaconvert layout) from its own thread; buffers pass unchanged",
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

impl BaseTransformImpl for DetectExport {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let name = settings
            .location
            .clone()
            .unwrap_or_else(|| "standard output".into());
        let output = open_output(&settings.location, settings.append).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                ["Could not open {} for writing: {}", name, e]
            )
        })?;
        self.counters.written.store(0, Ordering::Relaxed);
        self.counters.dropped.store(0, Ordering::Relaxed);
        let (sender, receiver) = std::sync::mpsc::sync_channel(settings.max_queue as usize);
        let (counters, element) = (self.counters.clone(), self.obj().downgrade());
        let writer = std::thread::Builder::new()
            .name("detectexport".into())
            .spawn(move || write_lines(output, receiver, counters, element, name))
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Thread,
                    ["Could not start the writer thread: {}", e]
                )
            })?;
        *lock(&self.state) = Some(State {
            sender: Some(sender),
            writer: Some(writer),
            info: None,
            last_objects: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let state = lock(&self.state).take();
        if let Some(mut state) = state {
            // Closing the queue lets the writer finish what is queued and end.
            drop(state.sender.take());
            if let Some(writer) = state.writer.take()
                && writer.join().is_err()
            {
                gst::warning!(CAT, imp = self, "The writer thread panicked");
            }
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
        if let gst::EventView::Eos(_) = event.view() {
            self.drain();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let mut guard = lock(&self.state);
        let Some(state) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let (width, height) = state.info.as_ref().map_or((0, 0), |i| (i.width(), i.height()));
        let objects: Vec<ObjectJson> = crate::pads::read_regions(buffer)
            .iter()
            .map(|r| ObjectJson::from_region(r, width, height))
            .collect();
        if settings.new_results_only {
            let signature = serde_json::to_string(&objects).unwrap_or_default();
            if state.last_objects.as_ref() == Some(&signature) {
                return Ok(gst::FlowSuccess::Ok);
            }
            state.last_objects = Some(signature);
        }
        let line = FrameJson {
            resolution: Resolution { width, height },
            source: settings.source,
            timestamp: buffer.pts().map(|t| t.nseconds()),
            objects,
        }
        .to_line();
        let Some(sender) = state.sender.clone() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        drop(guard);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            sender.try_send(Command::Line(line))
        {
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            gst::debug!(
                CAT,
                imp = self,
                "Output is behind: {dropped} lines dropped so far"
            );
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
