//! Pipelines and frames the tables build on.

use std::sync::Arc;

use gst::prelude::*;

/// The demo clip's H.264 as a byte stream (made once beside it), which multifilesrc can loop.
pub fn looping_clip() -> std::path::PathBuf {
    let clip = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/media/bikes.mp4");
    let stream = clip.with_extension("mp4.h264");
    if !stream.exists() {
        let partial = clip.with_extension(format!("mp4.h264.{}", std::process::id()));
        run_to_eos(&parse_pipeline(&format!(
            "filesrc location={} ! qtdemux ! h264parse ! \
             video/x-h264,stream-format=byte-stream,alignment=au ! filesink location={}",
            clip.display(),
            partial.display()
        )));
        std::fs::rename(&partial, &stream).expect("clip stream");
    }
    stream
}

pub fn parse_pipeline(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .expect("pipeline parses")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline")
}

pub fn run_to_eos(pipeline: &gst::Pipeline) {
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(600),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("ends");
    if let gst::MessageView::Error(e) = message.view() {
        panic!("pipeline failed: {} {:?}", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).expect("stops");
}

pub fn frame_1080p(format: &str) -> (gst::Buffer, gst_video::VideoInfo) {
    first_frame(&format!(
        "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,format={format},width=1920,height=1080,framerate=30/1 ! \
         appsink name=sink"
    ))
}

/// The appsink named `sink` of `pipeline`.
pub fn appsink(pipeline: &gst::Pipeline) -> gst_app::AppSink {
    pipeline
        .by_name("sink")
        .expect("sink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink")
}

/// The first frame `description` (ending in `appsink name=sink`) delivers, and its layout.
pub fn first_frame(description: &str) -> (gst::Buffer, gst_video::VideoInfo) {
    let pipeline = parse_pipeline(description);
    let sink = appsink(&pipeline);
    pipeline.set_state(gst::State::Playing).expect("plays");
    let sample = sink.pull_sample().expect("frame");
    pipeline.set_state(gst::State::Null).expect("stops");
    let info = gst_video::VideoInfo::from_caps(sample.caps().expect("caps")).expect("info");
    (sample.buffer_owned().expect("buffer"), info)
}

/// Counts the buffers reaching the pad of the element named `sink`.
pub fn count_buffers_at_sink(pipeline: &gst::Pipeline) -> Arc<std::sync::atomic::AtomicU64> {
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = count.clone();
    pipeline
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .expect("sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    count
}
