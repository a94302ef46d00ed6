#!/usr/bin/env python3
"""What a user would write instead of asyncdetect: GStreamer appsink + onnxruntime, running the
model on each frame inside the loop that pulls the frames (the common blocking recipe).

    python blocking_recipe.py MODEL.onnx FPS SECONDS [THREADS]

A live 1080p source at FPS feeds appsink (scaled to the model's input by the pipeline); the loop
pulls the newest frame, runs the model, and counts it as delivered. Frames the loop is too slow for
are dropped by appsink (max-buffers=1 drop=true), as such programs are written to keep latency
bounded. Prints one JSON line: delivered video fps and detection fps.
"""
import json
import os
import sys
import time

import gi
import numpy as np
import onnxruntime as ort

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

model, fps, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 0
options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
model_input = session.get_inputs()[0]
_, height, width, _ = model_input.shape
dtype = np.uint8 if model_input.type == "tensor(uint8)" else np.float32

Gst.init(None)
photo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "person.jpg")
pipeline = Gst.parse_launch(
    f"filesrc location={photo} ! jpegdec ! videoconvert ! videoscale ! "
    f"video/x-raw,format=I420,width=1920,height=1080 ! imagefreeze is-live=true ! "
    f"video/x-raw,framerate={fps}/1 ! videoconvert ! videoscale ! "
    f"video/x-raw,format=RGB,width={width},height={height} ! "
    f"appsink name=sink max-buffers=1 drop=true sync=false"
)
sink = pipeline.get_by_name("sink")
pipeline.set_state(Gst.State.PLAYING)
delivered = 0
detections = 0
start = None
while True:
    sample = sink.emit("try-pull-sample", Gst.SECOND)
    if sample is None:
        break
    if start is None:
        start = time.monotonic()
    elif time.monotonic() - start >= seconds:
        break
    buffer = sample.get_buffer()
    ok, info = buffer.map(Gst.MapFlags.READ)
    frame = np.frombuffer(info.data, dtype=np.uint8)[: width * height * 3].reshape(1, height, width, 3)
    tensor = frame.astype(dtype) / (255.0 if dtype == np.float32 else 1)
    buffer.unmap(info)
    session.run(None, {model_input.name: tensor.astype(dtype)})
    delivered += 1
    detections += 1
elapsed = time.monotonic() - start if start else 1.0
pipeline.set_state(Gst.State.NULL)
print(json.dumps({"delivered_fps": delivered / elapsed, "detection_fps": detections / elapsed}))
