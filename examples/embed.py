#!/usr/bin/python3
"""The smallest Python application that embeds asyncdetect: it builds the pipeline, reads the
detections from the buffers in a pad probe and from the element's bus messages, and prints them.

    /usr/bin/python3 examples/embed.py [VIDEO FILE] [asyncdetect PROPERTY=VALUE ...]

Default file: target/media/bikes.mp4. Needs Debian's python3-gi and python3-gst-1.0 (the set-up
installs both; GStreamer's Python overrides are what turn a list field into a Python list). The
plugin is looked for in target/release unless GST_PLUGIN_PATH says otherwise or it is installed.

PyGObject cannot walk a buffer's metas, so the buffers are read through asyncdetect's
"read-detections" action signal: it returns every region-of-interest meta on a buffer as one
Gst.Structure.
"""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def describe(detection):
    """One detection structure as 'person 87% #3 at 10,20 30x40'."""
    text = "{} {:.0f}%".format(detection.get_value("label"), 100 * detection.get_value("confidence"))
    if detection.has_field("object_id"):
        text += " #{}".format(detection.get_value("object_id"))
    return text + " at {},{} {}x{}".format(
        detection.get_value("x"),
        detection.get_value("y"),
        detection.get_value("width"),
        detection.get_value("height"),
    )


def main(argv):
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if "GST_PLUGIN_PATH" not in os.environ:
        os.environ["GST_PLUGIN_PATH"] = os.path.join(repository, "target", "release")
    arguments = [a for a in argv[1:] if "=" not in a]
    properties = [a.split("=", 1) for a in argv[1:] if "=" in a]
    location = arguments[0] if arguments else os.path.join(repository, "target", "media", "bikes.mp4")

    Gst.init(None)
    pipeline = Gst.parse_launch(
        "filesrc name=source ! decodebin ! videoconvert ! asyncdetect name=detect threshold=0.6 "
        "! fakesink sync=true"
    )
    pipeline.get_by_name("source").set_property("location", location)
    detect = pipeline.get_by_name("detect")
    if detect is None:
        sys.exit("asyncdetect not found: build it (cargo build --release) or set GST_PLUGIN_PATH")
    for name, value in properties:
        # Gst.util_set_object_arg parses the value as gst-launch-1.0 does (enums by nick, ...).
        Gst.util_set_object_arg(detect, name, value)

    # 1. From the buffers: every buffer after asyncdetect carries the newest detections.
    def on_buffer(pad, info):
        buffer = info.get_buffer()
        found = detect.emit("read-detections", buffer).get_value("detections")
        if found:
            print("buffer  {:6.2f}s  {}".format(buffer.pts / Gst.SECOND, ", ".join(map(describe, found))))
        return Gst.PadProbeReturn.OK

    detect.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_buffer)

    # 2. From the bus: one "asyncdetect" element message per finished inference.
    loop = GLib.MainLoop()
    failure = []

    def on_message(bus, message):
        structure = message.get_structure()
        if message.type == Gst.MessageType.ELEMENT and structure.get_name() == "asyncdetect":
            found = structure.get_value("detections")
            if found:
                at = structure.get_value("timestamp") / Gst.SECOND if structure.has_field("timestamp") else 0.0
                labels = ", ".join(
                    "{} {:.0f}%".format(d.get_value("label"), 100 * d.get_value("confidence")) for d in found
                )
                print("message {:6.2f}s  {} objects: {}".format(at, len(found), labels))
        elif message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            failure.append("{} ({})".format(error.message, debug))
            loop.quit()
        elif message.type == Gst.MessageType.EOS:
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        loop.run()
    finally:
        pipeline.set_state(Gst.State.NULL)
    if failure:
        sys.exit("error: " + failure[0])


if __name__ == "__main__":
    main(sys.argv)
