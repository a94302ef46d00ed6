#!/usr/bin/python3
"""A real RTSP server on 127.0.0.1 for the tests: serves an MP4 (H.264) file at /camera as a live
camera would, without end (the clip loops), and with COUNT also at /camera0 ... /camera{COUNT-1},
once from the start of the file (the benchmark's many cameras). Every client gets its own stream:
a shared one would end for everyone with the clip, and two clients preparing it at once race.

    /usr/bin/python3 tests/rtsp_server.py PORT FILE [COUNT]

Prints "ready" once it listens. Uses Debian's gst-rtsp-server through GObject bindings.
"""
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, path = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 0


def annex_b_copy(clip):
    """The clip's H.264 as a byte stream (`CLIP.h264`, made once): a byte stream can be read in a
    loop by multifilesrc, where an MP4 cannot. Written under a temporary name and renamed, so
    servers starting together never read a half-written file."""
    target = clip + ".h264"
    if os.path.exists(target):
        return target
    partial = f"{target}.{os.getpid()}"
    pipeline = Gst.parse_launch(
        "filesrc name=src ! qtdemux ! h264parse ! "
        "video/x-h264,stream-format=byte-stream,alignment=au ! filesink name=sink"
    )
    pipeline.get_by_name("src").set_property("location", clip)
    pipeline.get_by_name("sink").set_property("location", partial)
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(
        60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR
    )
    pipeline.set_state(Gst.State.NULL)
    if message is None or message.type != Gst.MessageType.EOS:
        sys.exit(f"cannot read the H.264 stream of {clip}")
    os.replace(partial, target)
    return target


def framerate(clip):
    """The clip's frame rate, which a bare byte stream does not carry."""
    pipeline = Gst.parse_launch("filesrc name=src ! qtdemux ! h264parse ! fakesink name=sink")
    pipeline.get_by_name("src").set_property("location", clip)
    pipeline.set_state(Gst.State.PAUSED)
    pipeline.get_state(30 * Gst.SECOND)
    caps = pipeline.get_by_name("sink").get_static_pad("sink").get_current_caps()
    pipeline.set_state(Gst.State.NULL)
    ok, numerator, denominator = caps.get_structure(0).get_fraction("framerate")
    return f"{numerator}/{denominator}" if ok and numerator > 0 else "25/1"


def factory(launch):
    media = GstRtspServer.RTSPMediaFactory()
    media.set_launch(f"( {launch} ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    media.set_shared(False)
    return media


server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
looped = (
    f"multifilesrc location={annex_b_copy(path)} loop=true "
    f'caps="video/x-h264,stream-format=byte-stream,alignment=au,framerate={framerate(path)}" '
    "! h264parse"
)
server.get_mount_points().add_factory("/camera", factory(looped))
once = f"filesrc location={path} ! qtdemux ! h264parse"
for index in range(count):
    server.get_mount_points().add_factory(f"/camera{index}", factory(once))
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{port}")
print("ready", flush=True)
GLib.MainLoop().run()
