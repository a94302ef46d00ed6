#!/usr/bin/env python3
"""Computes the reference boxes that tests/tracking.rs compares the element with, by a path that
shares nothing with the element but the model files: GStreamer decodes tests/data/person.jpg,
numpy resizes and normalises it, ONNX Runtime (Python) runs the model, and the decoding below is
written from each model family's own description (MediaPipe's anchors for BlazeFace, NanoDet's
per-stride distributions).

    bash scripts/bench-env.sh && target/bench-venv/bin/python tests/reference_boxes.py

Prints one line per reference: the name the test uses, then label, score and the normalised box
(x_min, y_min, x_max, y_max). Rerun it after changing a model; the values in tests/tracking.rs
were copied from its output.
"""
import os

import gi
import numpy as np
import onnxruntime

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PHOTO = os.path.join(ROOT, "tests", "data", "person.jpg")


def decoded(caps):
    """The photo as packed RGB through jpegdec ! videoconvert ! videoscale ! `caps`."""
    pipeline = Gst.parse_launch(
        f"filesrc location={PHOTO} ! jpegdec ! videoconvert ! videoscale ! {caps} ! appsink name=sink"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    sample = sink.emit("pull-sample")
    structure = sample.get_caps().get_structure(0)
    width, height = structure.get_value("width"), structure.get_value("height")
    ok, info = sample.get_buffer().map(Gst.MapFlags.READ)
    assert ok
    stride = (width * 3 + 3) // 4 * 4
    rows = np.frombuffer(info.data, np.uint8)[: stride * height].reshape(height, stride)
    pixels = rows[:, : width * 3].reshape(height, width, 3).astype(np.float32)
    pipeline.set_state(Gst.State.NULL)
    return pixels


def bilinear(image, width, height):
    """Textbook bilinear resize, pixel centres at +0.5, edges clamped."""
    h, w, _ = image.shape
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (xs - x0)[None, :, None], (ys - y0)[:, None, None]
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return np.clip(np.round(top * (1 - fy) + bottom * fy), 0, 255)


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def nms(candidates, threshold):
    """Greedy per-class non-maximum suppression over (label, score, box)."""
    kept = []
    for candidate in sorted(candidates, key=lambda c: -c[1]):
        if all(k[0] != candidate[0] or iou(k[2], candidate[2]) <= threshold for k in kept):
            kept.append(candidate)
    return kept


def session(name):
    return onnxruntime.InferenceSession(os.path.join(ROOT, "models", name), providers=["CPUExecutionProvider"])


def blazeface(image):
    """MediaPipe BlazeFace (back model): anchors at the centres of a 16x16 grid (2 per cell) and an
    8x8 grid (6 per cell); each regression's first four values are the box centre offset and size in
    input pixels; scores are logits."""
    model = session("blazeface_back_256.onnx")
    tensor = (bilinear(image, 256, 256) / 127.5 - 1.0)[None].astype(np.float32)
    outputs = model.run(None, {model.get_inputs()[0].name: tensor})
    scores = [o for o in outputs if o.shape[-1] == 1]
    boxes = [o for o in outputs if o.shape[-1] == 16]
    candidates = []
    for logits, regressions in zip(scores, boxes):
        count = logits.shape[1]
        per_cell = 2 if count == 512 else 6
        grid = int(round((count // per_cell) ** 0.5))
        for anchor in range(count):
            score = 1 / (1 + np.exp(-np.clip(float(logits[0, anchor, 0]), -100, 100)))
            if score < 0.3:
                continue
            cell = anchor // per_cell
            ax, ay = (cell % grid + 0.5) / grid, (cell // grid + 0.5) / grid
            dx, dy, w, h = regressions[0, anchor, :4] / 256.0
            cx, cy = ax + dx, ay + dy
            candidates.append(("face", float(score), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    return nms(candidates, 0.3)


def nanodet(image):
    """NanoDet-m 416: BGR input normalised by NanoDet's mean/std; per stride 8, 16, 32 class
    probabilities [1, N, 80] and, per side, an 11-bin distribution of the distance from the cell
    centre in strides, whose expectation is the distance."""
    model = session("nanodet_m_416.onnx")
    mean, std = np.array([103.53, 116.28, 123.675]), np.array([57.375, 57.12, 58.395])
    bgr = image[:, :, ::-1]
    tensor = ((bgr - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    outputs = model.run(None, {model.get_inputs()[0].name: tensor})
    labels = open(os.path.join(ROOT, "models", "coco80_labels.txt")).read().split("\n")
    by_cells = {}
    for output in outputs:
        by_cells.setdefault(output.shape[1], {})[output.shape[2]] = output[0]
    candidates = []
    for cells, pair in by_cells.items():
        probabilities, distributions = pair[80], pair[44]
        stride = next(s for s in (8, 16, 32, 64) if (416 // s) ** 2 == cells)
        columns = 416 // stride
        for cell in range(cells):
            label = int(np.argmax(probabilities[cell]))
            score = float(probabilities[cell, label])
            if score < 0.05:
                continue
            cx, cy = (cell % columns + 0.5) * stride, (cell // columns + 0.5) * stride
            sides = distributions[cell].reshape(4, 11)
            weights = np.exp(sides - sides.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            left, top, right, bottom = (weights @ np.arange(11)) * stride
            box = [(cx - left) / 416, (cy - top) / 416, (cx + right) / 416, (cy + bottom) / 416]
            candidates.append((labels[label], score, [min(max(v, 0.0), 1.0) for v in box]))
    return nms(candidates, 0.5)


def ssd(image):
    """The built-in SSD MobileNet v2: post-processed outputs, boxes as (ymin, xmin, ymax, xmax)."""
    model = session("ssd_mobilenet_v2_coco_quant.onnx")
    tensor = bilinear(image, 300, 300)[None].astype(np.uint8)
    boxes, classes, scores, count = model.run(None, {model.get_inputs()[0].name: tensor})
    return [
        ("person" if classes[0, i] == 0 else str(int(classes[0, i])), float(scores[0, i]), list(boxes[0, i][[1, 0, 3, 2]]))
        for i in range(int(count[0]))
    ]


def show(name, detection):
    label, score, box = detection
    print(f"{name}: {label} {score:.6f} " + " ".join(f"{v:.6f}" for v in box))


def main():
    Gst.init(None)
    photo = decoded("video/x-raw,format=RGB")
    # tests/common computes this one itself, the same way, in Rust: printed to cross-check.
    show("ssd_person", max((d for d in ssd(photo) if d[0] == "person"), key=lambda d: d[1]))
    faces = blazeface(photo)
    show("face", max(faces, key=lambda d: d[1]))
    persons = [d for d in nanodet(bilinear(photo, 416, 416)) if d[0] == "person" and d[1] >= 0.4]
    show("nanodet_person", max(persons, key=lambda d: d[1]))
    # The 416x416 frame the test feeds the element: GStreamer scales it, the element only swaps
    # channels and normalises, so the element must match this to float precision.
    at_input_size = decoded("video/x-raw,format=RGB,width=416,height=416,pixel-aspect-ratio=1/1")
    show("nanodet_best_at_input_size", max(nanodet(at_input_size), key=lambda d: d[1]))


if __name__ == "__main__":
    main()
