//! Snapshots of object events, made by two threads of their own so the streaming thread never
//! waits for them, nor for a lock they hold:
//!
//! - the encoder, at a low priority (it converts and encodes whole frames), takes frames from a
//!   one-slot mailbox the streaming thread fills with a pointer swap, and polls it instead of
//!   being woken. While it has not taken the last frame, the next ones are skipped and counted.
//! - the deliverer, at the normal priority, writes the pictures, publishes them and posts the
//!   messages: the locks that takes (the bus's, the publisher's queue) are shared with the
//!   streaming thread, and a thread that seldom gets the CPU must not hold them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::outputs::{OutputSettings, Report, unix_now};
use crate::convert::FrameConverter;
use crate::draw::TextRenderer;
use crate::geometry::{PixelRect, Placement};
use crate::lock;
use crate::mqtt::{Delivery, MessageSender};
use crate::preprocess::ChannelOrder;
use crate::publish::Topics;
use crate::slot::Slot;
use crate::snapshot::Picture;

/// Snapshots are made from the frame shrunk to at most this on its longer side.
const MAX_SIDE: u32 = 1920;
/// The encoder yields the CPU to the video and to everything else: its work can wait.
const ENCODER_NICE: i32 = 15;
/// How often an idle encoder looks for a frame.
const POLL: Duration = Duration::from_millis(10);

/// A frame with object events, for their snapshots.
pub struct SnapshotJob {
    pub buffer: gst::Buffer,
    pub info: gst_video::VideoInfo,
    /// Per object event: id, label, event name, normalised box.
    pub objects: Vec<(u32, String, &'static str, [f64; 4])>,
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

/// What the encoder hands the deliverer.
enum Encoded {
    Picture { made: SnapshotMade, jpeg: Vec<u8> },
    Failed(String),
}

pub struct Snapshots {
    mailbox: Arc<Slot<SnapshotJob>>,
    closed: Arc<AtomicBool>,
    dropped: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Snapshots {
    pub fn start(
        settings: &OutputSettings,
        topics: Topics,
        sender: Option<MessageSender>,
        report: Arc<dyn Fn(Report) + Send + Sync>,
    ) -> Result<Snapshots, String> {
        if let Some(dir) = &settings.snapshot_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot make the snapshot directory '{}': {e}", dir.display()))?;
        }
        let mailbox: Arc<Slot<SnapshotJob>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (encoded_tx, encoded_rx) = channel();
        let encoder = Encoder {
            crop: settings.snapshot_crop,
            quality: settings.snapshot_quality,
        };
        let (encoder_mailbox, encoder_closed) = (mailbox.clone(), closed.clone());
        let encoder = std::thread::Builder::new()
            .name("snapshot-encode".into())
            .spawn(move || {
                // A failure only costs smoothness.
                let _ = crate::priority::lower_priority(ENCODER_NICE);
                encoder.run(&encoder_mailbox, &encoder_closed, encoded_tx)
            })
            .map_err(|e| format!("cannot start the snapshot thread: {e}"))?;
        let deliverer = Deliverer {
            dir: settings.snapshot_dir.clone(),
            keep: settings.snapshot_max_files as usize,
            topics,
            sender,
            report,
        };
        let deliverer = std::thread::Builder::new()
            .name("snapshot-deliver".into())
            .spawn(move || deliverer.run(encoded_rx))
            .map_err(|e| format!("cannot start the snapshot thread: {e}"))?;
        Ok(Snapshots {
            mailbox,
            closed,
            dropped: AtomicU64::new(0),
            threads: Mutex::new(vec![encoder, deliverer]),
        })
    }

    /// The streaming thread offers a frame: an atomic load and swap, never a wait. While the
    /// encoder has not taken the last one, this one is skipped (and its job never built).
    pub fn offer(&self, job: impl FnOnce() -> SnapshotJob) {
        if self.mailbox.is_full() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            drop(self.mailbox.put(job()));
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Finishes the frame being encoded and what is encoded, waiting at most `wait`.
    pub fn stop(&self, wait: Duration) {
        self.closed.store(true, Ordering::Release);
        let deadline = Instant::now() + wait;
        for thread in lock(&self.threads).drain(..) {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        drop(self.mailbox.take());
    }
}

struct Encoder {
    crop: bool,
    quality: u8,
}

impl Encoder {
    fn run(self, mailbox: &Slot<SnapshotJob>, closed: &AtomicBool, out: Sender<Encoded>) {
        let mut converter: Option<(u32, u32, FrameConverter)> = None;
        let mut text = TextRenderer::new();
        while !closed.load(Ordering::Acquire) {
            let Some(job) = mailbox.take() else {
                std::thread::sleep(POLL);
                continue;
            };
            let picture = match picture(job.buffer, &job.info, &mut converter) {
                Ok(picture) => picture,
                Err(why) => {
                    // Reported by the deliverer: this thread takes no lock the video takes.
                    let _ = out.send(Encoded::Failed(why));
                    continue;
                }
            };
            for (id, label, event, bbox) in job.objects {
                let (mut image, corners) = if self.crop {
                    picture.crop_around(bbox)
                } else {
                    (picture.clone(), bbox)
                };
                image.draw_box(corners, &format!("{label} #{id}"), &mut text);
                let encoded = match image.jpeg(self.quality) {
                    Ok(jpeg) => Encoded::Picture {
                        made: SnapshotMade {
                            object_id: id,
                            label,
                            event,
                            bytes: jpeg.len(),
                            location: None,
                        },
                        jpeg,
                    },
                    Err(why) => Encoded::Failed(why),
                };
                if out.send(encoded).is_err() {
                    return;
                }
            }
        }
    }
}

/// The frame as packed RGB, shrunk to at most `MAX_SIDE`; converters are kept while the size stays.
fn picture(
    buffer: gst::Buffer,
    info: &gst_video::VideoInfo,
    converter: &mut Option<(u32, u32, FrameConverter)>,
) -> Result<Picture, String> {
    let (width, height) = (info.width(), info.height());
    let scale = (MAX_SIDE as f64 / width.max(height).max(1) as f64).min(1.0);
    let (out_w, out_h) = (
        ((width as f64 * scale).round() as u32).max(1),
        ((height as f64 * scale).round() as u32).max(1),
    );
    if converter
        .as_ref()
        .is_none_or(|(w, h, _)| (*w, *h) != (out_w, out_h))
    {
        *converter = Some((out_w, out_h, FrameConverter::new(ChannelOrder::Rgb, out_w, out_h)));
    }
    let Some((_, _, frame_converter)) = converter.as_mut() else {
        return Err("no converter".into());
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
    let (frame, stride) = frame_converter.convert(buffer, info, &placement)?;
    let data = frame
        .plane_data(0)
        .map_err(|_| "cannot read the converted frame".to_string())?;
    let row = out_w as usize * 3;
    let mut rgb = Vec::with_capacity(row * out_h as usize);
    for y in 0..out_h as usize {
        rgb.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(Picture {
        width: out_w,
        height: out_h,
        rgb,
    })
}

struct Deliverer {
    dir: Option<PathBuf>,
    keep: usize,
    topics: Topics,
    sender: Option<MessageSender>,
    report: Arc<dyn Fn(Report) + Send + Sync>,
}

impl Deliverer {
    fn run(self, encoded: Receiver<Encoded>) {
        while let Ok(encoded) = encoded.recv() {
            let (mut made, jpeg) = match encoded {
                Encoded::Picture { made, jpeg } => (made, jpeg),
                Encoded::Failed(why) => {
                    (self.report)(Report::SnapshotFailed(why));
                    continue;
                }
            };
            if let Some(dir) = &self.dir {
                let name = format!(
                    "{}-{:013}-{}-{}.jpg",
                    self.topics.camera(),
                    (unix_now() * 1000.0) as u64,
                    made.object_id,
                    made.event
                );
                let path = dir.join(name);
                match std::fs::write(&path, &jpeg) {
                    Ok(()) => {
                        made.location = Some(path);
                        prune(dir, self.topics.camera(), self.keep);
                    }
                    Err(e) => (self.report)(Report::SnapshotFailed(format!(
                        "cannot write snapshot '{}': {e}",
                        path.display()
                    ))),
                }
            }
            if let Some(sender) = &self.sender {
                sender.publish(&self.topics.snapshot(&made.label), jpeg, Delivery::State);
            }
            (self.report)(Report::Snapshot(made));
        }
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
