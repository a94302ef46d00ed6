#!/usr/bin/python3
"""A real RTSP server on 127.0.0.1 for the tests: serves an MP4 (H.264) file at /camera, and with
COUNT also at /camera0 ... /camera{COUNT-1}, each client of those with its own stream from the
start of the file (the benchmark's many cameras).

    /usr/bin/python3 tests/rtsp_server.py PORT FILE [COUNT]

Prints "ready" once it listens. Uses Debian's gst-rtsp-server through GObject bindings.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, path = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 0
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)


def factory(shared):
    media = GstRtspServer.RTSPMediaFactory()
    media.set_launch(
        f"( filesrc location={path} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    media.set_shared(shared)
    return media


server.get_mount_points().add_factory("/camera", factory(True))
for index in range(count):
    server.get_mount_points().add_factory(f"/camera{index}", factory(False))
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{port}")
print("ready", flush=True)
GLib.MainLoop().run()
