//! The smallest application that embeds `asyncdetect`: it builds the pipeline in code, reads the
//! detections from the buffers in a pad probe and from the element's bus messages, and prints them.
//!
//!     cargo run --example embed -- [VIDEO FILE]        (default: target/media/bikes.mp4)

mod shared;

use gst::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let input = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/media/bikes.mp4".into());
    gst::init()?;
    gstasyncdetect::plugin_register_static()?;

    // filesrc ! decodebin ! videoconvert ! asyncdetect ! fakesink, built element by element.
    let pipeline = gst::Pipeline::new();
    let source = gst::ElementFactory::make("filesrc")
        .property("location", &input)
        .build()?;
    let decode = gst::ElementFactory::make("decodebin").build()?;
    let convert = gst::ElementFactory::make("videoconvert").build()?;
    let detect = gst::ElementFactory::make("asyncdetect")
        .property("threshold", 0.6f64)
        .build()?;
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", true)
        .build()?;
    pipeline.add_many([&source, &decode, &convert, &detect, &sink])?;
    source.link(&decode)?;
    gst::Element::link_many([&convert, &detect, &sink])?;
    let convert_sink = convert.static_pad("sink").ok_or("videoconvert has no sink pad")?;
    decode.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .and_then(|caps| caps.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if is_video && !convert_sink.is_linked() {
            let _ = pad.link(&convert_sink);
        }
    });

    // 1. From the buffers: every buffer after asyncdetect carries the newest detections as ROI metas.
    detect
        .static_pad("src")
        .ok_or("no src pad")?
        .add_probe(gst::PadProbeType::BUFFER, |_, info| {
            if let Some(buffer) = info.buffer() {
                let objects: Vec<String> = buffer
                    .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                    .map(|meta| {
                        let (x, y, w, h) = meta.rect();
                        let confidence = meta
                            .param("detection")
                            .and_then(|d| d.get::<f64>("confidence").ok())
                            .unwrap_or(0.0);
                        format!(
                            "{} {:.0}% at {x},{y} {w}x{h}",
                            meta.roi_type(),
                            confidence * 100.0
                        )
                    })
                    .collect();
                if !objects.is_empty() {
                    let pts = buffer.pts().map(|t| t.seconds_f64()).unwrap_or(0.0);
                    println!("buffer  {pts:6.2}s  {}", objects.join(", "));
                }
            }
            gst::PadProbeReturn::Ok
        });

    // 2. From the bus: one message per finished inference.
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    for message in bus.iter_timed(gst::ClockTime::NONE) {
        match message.view() {
            gst::MessageView::Element(m) => {
                if let Some((timestamp, found)) = m.structure().and_then(shared::result_of)
                    && !found.is_empty()
                {
                    let at = timestamp.map(|t| t.seconds_f64()).unwrap_or(0.0);
                    println!(
                        "message {at:6.2}s  {} objects: {}",
                        found.len(),
                        shared::summary(&found)
                    );
                }
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                pipeline.set_state(gst::State::Null)?;
                return Err(format!("{} ({:?})", e.error(), e.debug()).into());
            }
            _ => (),
        }
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(())
}
