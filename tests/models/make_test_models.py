#!/usr/bin/env python3
"""Generates the small ONNX graphs the tests use (committed; rerun only to change them).

    python3 -m pip install onnx==1.23.2 && python3 tests/models/make_test_models.py

- slow_ssd.onnx: an SSD-style post-processed detector (boxes/classes/scores/count, TF Object
  Detection API output names) that always reports one `person` at (0.25, 0.25)-(0.75, 0.75) with
  confidence 0.9, after the work of a real detector's backbone: a stack of 3x3 convolutions with
  fixed pseudo-random weights and ReLU6 over the input pixels (so ONNX Runtime cannot fold it
  away). It is the tests' slow model and the benchmark's heavy stand-in; costs in README.md here.
- bad_outputs.onnx: a valid graph with a usable image input but a single [1, 10] output that no
  decoder understands.
- bad_input.onnx: a valid graph whose input is a [1, 10] vector, not an image.
- endless_ssd.onnx: an SSD-style graph (uint8 [1, 300, 300, 3], one `person` like slow_ssd.onnx)
  that returns at once on an all-black frame (the element's warm-up) and otherwise loops 10^8
  times (many minutes on any machine): a run that never ends by itself, for the tests that stop,
  flush or change the model while an inference runs.
- slow_loading_ssd.onnx: an SSD-style graph (one `person` like slow_ssd.onnx, answered at once)
  whose loading takes seconds: ONNX Runtime folds a chain of two 4096x4096 matrix products of
  constants (~270 GFLOP, values 0.5 and 1.0) while it builds the session, for the tests that stop
  an element during a load.
- huge_input.onnx: an SSD-style graph whose image input declares [1, 100000, 100000, 3] (30 GB
  per frame): the element must refuse it with an error, not try to allocate a frame for it.
- tiny_yolov8.onnx: a YOLOv8-layout stand-in (no YOLO detector ships in a package yet): float
  NCHW input [1, 3, 320, 320], output `output0` [1, 6, 100] (cx, cy, w, h, 2 class scores x 100
  candidates), constant: a class-0 box at (160, 120, 64, 128) scoring 0.9, an overlapping class-0
  duplicate scoring 0.7 (NMS removes it), a class-1 box at (240, 240, 40, 40) scoring 0.8.
- batch_brightness.onnx: a YOLOv8-layout model that takes a batch of any size (input
  [-1, 3, 64, 64] float, output [-1, 5, 8]) and reports, per image, one class-0 box at (16, 16)-(48,
  48) whose score is the image's mean brightness (0..1); about 20 ms per run from a busy loop on
  the first image, so frames of several streams queue up and get batched. Each stream can check
  that the score it gets is its own frame's brightness.

Cost must not depend on the pixels or on the CPU's handling of denormal floats (some CPUs multiply
denormals 100x slower): every value a costly operator touches stays far from zero or is exactly
zero. The convolutions' activations are clipped to 0..6 around a positive bias; the busy loop
computes tanh(state . M + 1) with |row sums of M| <= 0.5, so its state stays within 0.46..0.91.
`python3 tests/models/make_test_models.py --time` prints each model's cost on blank, dark, grey
and noise frames.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
# The backbone of slow_ssd.onnx: (output channels, stride) of each 3x3 convolution. The 32 to 32
# convolutions take their weights in turn from four sets, which keeps the file small.
BACKBONE = [(32, 2)] + [(32, 1)] * 60
SHARED_WEIGHT_SETS = 4
RNG = np.random.default_rng(20261201)


def const(name, array):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name + "_value"))


def save(graph, file_name):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, file_name))


def busy_loop_body(size):
    """A Loop body computing state = tanh(state . matrix + 1) each iteration: work that ONNX Runtime
    cannot fold away, to make a model take time. `matrix` is a constant of the outer graph whose
    rows sum to at most 0.5 in absolute value, so for a state in 0..1 the argument stays in
    0.5..1.5: no value ever nears the denormal range, whatever the input."""
    return helper.make_graph(
        [
            helper.make_node("MatMul", ["state_in", "matrix"], ["product"]),
            const("one", np.array(1.0, dtype=np.float32)),
            helper.make_node("Add", ["product", "one"], ["shifted"]),
            helper.make_node("Tanh", ["shifted"], ["state_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "busy_loop",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [size, size]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [size, size]),
        ],
    )


def loop_matrix(size):
    """A fixed size x size matrix whose entries lie in +-0.5/size, away from zero."""
    magnitude = RNG.uniform(0.1, 0.5, (size, size)) / size
    return (magnitude * RNG.choice([-1.0, 1.0], (size, size))).astype(np.float32)


def one_person_outputs(nothing):
    """Nodes and outputs of an SSD-style post-processed detector (TF Object Detection API names)
    that reports one `person` (class 0) at (0.25, 0.25)-(0.75, 0.75) with confidence 0.9. Each
    output adds `nothing` (a zero computed from the input) so ONNX Runtime cannot fold the work
    before it away."""
    nodes = []
    for name, value in (
        ("detection_boxes", [[[0.25, 0.25, 0.75, 0.75]]]),
        ("detection_classes", [[0.0]]),
        ("detection_scores", [[0.9]]),
        ("num_detections", [1.0]),
    ):
        nodes.append(const(name + "_value", np.array(value, dtype=np.float32)))
        nodes.append(helper.make_node("Add", [name + "_value", nothing], [name]))
    outputs = [
        helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, [1, 1, 4]),
        helper.make_tensor_value_info("detection_classes", TensorProto.FLOAT, [1, 1]),
        helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, [1, 1]),
        helper.make_tensor_value_info("num_detections", TensorProto.FLOAT, [1]),
    ]
    return nodes, outputs


def save_one_person_model(nodes, name, image):
    """Saves `nodes` (which compute a zero named `nothing` from the input `image`) followed by the
    one-person outputs as `name`.onnx."""
    outputs_nodes, outputs = one_person_outputs("nothing")
    save(helper.make_graph(nodes + outputs_nodes, name, [image], outputs), name + ".onnx")


def image_input(name="image"):
    return helper.make_tensor_value_info(name, TensorProto.UINT8, [1, 300, 300, 3])


def backbone(nodes, initializers, source, channels_in):
    """3x3 convolutions (He-scaled pseudo-random weights, bias 0.1) each followed by ReLU6, as
    MobileNet does; returns the last activation's name."""
    made = set()
    for index, (channels_out, stride) in enumerate(BACKBONE):
        shape = (channels_out, channels_in, 3, 3)
        weight_name = f"w{index}" if index == 0 else f"w_shared{index % SHARED_WEIGHT_SETS}"
        bias_name = f"b{channels_out}"
        if weight_name not in made:
            weight = RNG.normal(0.0, np.sqrt(2.0 / (9 * channels_in)), shape).astype(np.float32)
            initializers.append(numpy_helper.from_array(weight, weight_name))
            made.add(weight_name)
        if bias_name not in made:
            initializers.append(numpy_helper.from_array(np.full(channels_out, 0.1, np.float32), bias_name))
            made.add(bias_name)
        nodes.append(
            helper.make_node(
                "Conv",
                [source, weight_name, bias_name],
                [f"conv{index}"],
                kernel_shape=[3, 3],
                strides=[stride, stride],
                pads=[1, 1, 1, 1],
            )
        )
        nodes.append(helper.make_node("Clip", [f"conv{index}", "six_min", "six_max"], [f"act{index}"]))
        source, channels_in = f"act{index}", channels_out
    return source


def slow_ssd():
    initializers = [
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "six_min"),
        numpy_helper.from_array(np.array(6.0, dtype=np.float32), "six_max"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        const("inv_255", np.array(1.0 / 255.0, dtype=np.float32)),
        helper.make_node("Mul", ["pixels", "inv_255"], ["unit"]),
        helper.make_node("Transpose", ["unit"], ["planar"], perm=[0, 3, 1, 2]),
    ]
    features = backbone(nodes, initializers, "planar", 3)
    nodes += [
        helper.make_node("ReduceMean", [features], ["busy_mean"], keepdims=0),
        const("zero", np.array(0.0, dtype=np.float32)),
        helper.make_node("Mul", ["busy_mean", "zero"], ["nothing"]),
    ]
    outputs_nodes, outputs = one_person_outputs("nothing")
    nodes += outputs_nodes
    graph = helper.make_graph(
        nodes,
        "slow_ssd",
        [image_input()],
        outputs,
        initializer=initializers,
    )
    save(graph, "slow_ssd.onnx")


def bad_outputs():
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        const("shape", np.array([1, 10, -1], dtype=np.int64)),
        helper.make_node("Reshape", ["pixels", "shape"], ["rows"]),
        helper.make_node("ReduceMean", ["rows"], ["features"], axes=[2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "bad_outputs",
        [image_input()],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 10])],
    )
    save(graph, "bad_outputs.onnx")


def bad_input():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["vector"], ["same"])],
        "bad_input",
        [helper.make_tensor_value_info("vector", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("same", TensorProto.FLOAT, [1, 10])],
    )
    save(graph, "bad_input.onnx")


def endless_ssd():
    body = busy_loop_body(64)
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["pixels"], ["brightest"], keepdims=0),
        # 1 for any frame that is not all black, 0 for the warm-up's blank frame.
        helper.make_node("Sign", ["brightest"], ["not_black"]),
        const("iterations", np.array(100_000_000.0, dtype=np.float32)),
        helper.make_node("Mul", ["not_black", "iterations"], ["trips_float"]),
        helper.make_node("Cast", ["trips_float"], ["trip_count"], to=TensorProto.INT64),
        const("starts", np.array([0, 0, 0, 0], dtype=np.int64)),
        const("ends", np.array([1, 64, 64, 1], dtype=np.int64)),
        helper.make_node("Slice", ["pixels", "starts", "ends"], ["patch"]),
        const("inv_255", np.array(1.0 / 255.0, dtype=np.float32)),
        helper.make_node("Mul", ["patch", "inv_255"], ["patch_unit"]),
        const("matrix_shape", np.array([64, 64], dtype=np.int64)),
        helper.make_node("Reshape", ["patch_unit", "matrix_shape"], ["first_state"]),
        const("matrix", loop_matrix(64)),
        const("keep_going", np.array(True)),
        helper.make_node("Loop", ["trip_count", "keep_going", "first_state"], ["busy_result"], body=body),
        helper.make_node("ReduceMean", ["busy_result"], ["busy_mean"], keepdims=0),
        const("zero", np.array(0.0, dtype=np.float32)),
        helper.make_node("Mul", ["busy_mean", "zero"], ["nothing"]),
    ]
    save_one_person_model(nodes, "endless_ssd", image_input())


def huge_input():
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["mean"], keepdims=0),
        const("zero", np.array(0.0, dtype=np.float32)),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    save_one_person_model(nodes, "huge_input", helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 100000, 100000, 3]))


def tiny_yolov8():
    candidates = np.zeros((1, 6, 100), dtype=np.float32)
    candidates[0, :, 0] = [160, 120, 64, 128, 0.9, 0.0]
    candidates[0, :, 1] = [164, 124, 64, 128, 0.7, 0.0]
    candidates[0, :, 2] = [240, 240, 40, 40, 0.01, 0.8]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        const("zero", np.array(0.0, dtype=np.float32)),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        const("candidates", candidates),
        helper.make_node("Add", ["candidates", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolov8",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 100])],
    )
    save(graph, "tiny_yolov8.onnx")


def batch_brightness(iterations=2000):
    mask = np.zeros((1, 5, 8), dtype=np.float32)
    mask[0, 4, 0] = 1.0
    base = np.zeros((1, 5, 8), dtype=np.float32)
    base[0, :4, 0] = [32, 32, 32, 32]
    body = busy_loop_body(64)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean_kept"], axes=[1, 2, 3], keepdims=1),
        # [B, 1, 1, 1] -> [B, 1, 1]
        const("squeeze_axes", np.array([3], dtype=np.int64)),
        helper.make_node("Squeeze", ["mean_kept", "squeeze_axes"], ["mean"]),
        const("mask", mask),
        const("base", base),
        helper.make_node("Mul", ["mean", "mask"], ["scores"]),
        # The busy loop on the first image's first channel, so the run takes time.
        const("starts", np.array([0, 0, 0, 0], dtype=np.int64)),
        const("ends", np.array([1, 1, 64, 64], dtype=np.int64)),
        helper.make_node("Slice", ["images", "starts", "ends"], ["patch"]),
        const("matrix_shape", np.array([64, 64], dtype=np.int64)),
        helper.make_node("Reshape", ["patch", "matrix_shape"], ["first_state"]),
        const("matrix", loop_matrix(64)),
        const("trip_count", np.array(iterations, dtype=np.int64)),
        const("keep_going", np.array(True)),
        helper.make_node("Loop", ["trip_count", "keep_going", "first_state"], ["busy_result"], body=body),
        helper.make_node("ReduceMean", ["busy_result"], ["busy_mean"], keepdims=0),
        const("zero", np.array(0.0, dtype=np.float32)),
        helper.make_node("Mul", ["busy_mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["base", "nothing"], ["base_kept"]),
        helper.make_node("Add", ["scores", "base_kept"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "batch_brightness",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 5, 8])],
    )
    save(graph, "batch_brightness.onnx")


def slow_loading_ssd(size=4096, products=2):
    nodes = [
        const("square", np.array([size, size], dtype=np.int64)),
        helper.make_node(
            "ConstantOfShape", ["square"], ["halves"], value=helper.make_tensor("half", TensorProto.FLOAT, [1], [0.5])
        ),
    ]
    state = "halves"
    for index in range(products):
        nodes.append(helper.make_node("MatMul", [state, "halves"], [f"product{index}"]))
        # tanh of a large positive sum: exactly 1.0, far from zero and from overflow.
        nodes.append(helper.make_node("Tanh", [f"product{index}"], [f"state{index}"]))
        state = f"state{index}"
    nodes += [
        helper.make_node("ReduceMean", [state], ["folded_mean"], keepdims=0),
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["mean"], keepdims=0),
        helper.make_node("Add", ["mean", "folded_mean"], ["sum"]),
        const("zero", np.array(0.0, dtype=np.float32)),
        helper.make_node("Mul", ["sum", "zero"], ["nothing"]),
    ]
    save_one_person_model(nodes, "slow_loading_ssd", image_input())


def time_models():
    """Each generated model's cost with ONNX Runtime on one thread, on frames whose pixels are all
    0, all 2 (values that once decayed into denormals), all 200, and noise."""
    import time

    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    print(f"onnxruntime {onnxruntime.__version__}, 1 thread: ms per run (median of 5)")
    for name in ("slow_ssd.onnx", "batch_brightness.onnx", "tiny_yolov8.onnx"):
        session = onnxruntime.InferenceSession(os.path.join(HERE, name), options)
        model_input = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 4 for d in model_input.shape]
        scale = 1 if model_input.type == "tensor(uint8)" else 255.0
        dtype = np.uint8 if scale == 1 else np.float32
        noise = np.random.default_rng(1).integers(0, 256, shape)
        row = [name]
        for label, pixels in (("0", np.zeros(shape)), ("2", np.full(shape, 2)), ("200", np.full(shape, 200)), ("noise", noise)):
            frame = (pixels / scale).astype(dtype)
            session.run(None, {model_input.name: frame})
            times = []
            for _ in range(5):
                started = time.perf_counter()
                session.run(None, {model_input.name: frame})
                times.append((time.perf_counter() - started) * 1000)
            row.append(f"{label}: {sorted(times)[2]:.1f}")
        print("  ".join(row))


if __name__ == "__main__":
    if sys.argv[1:] == ["--time"]:
        time_models()
        sys.exit(0)
    batch_brightness()
    tiny_yolov8()
    slow_ssd()
    bad_outputs()
    bad_input()
    huge_input()
    endless_ssd()
    slow_loading_ssd()
