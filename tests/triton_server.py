"""A real Triton Inference Server (nvidia-pytriton) on loopback serving the shipped SSD model with
ONNX Runtime, for the remote-inference tests, the example and the benchmark.

Models: `ssd` (the built-in SSD MobileNet v2, answering KServe v2 with the TF Object Detection API's
output names), `ssd_slow` (the same, a second late: for request deadlines) and `unusable` (outputs
no decoder reads). Run with the venv `scripts/setup-triton.sh` makes:
    target/triton-venv/bin/python tests/triton_server.py --grpc-port 18001 --http-port 18000
It prints `ready` (and writes `--ready-file`, if given) once every model answers, then serves until
killed.
"""

import argparse
import pathlib
import time

import numpy as np
import onnxruntime
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MODEL = pathlib.Path(__file__).resolve().parent.parent / "models" / "ssd_mobilenet_v2_coco_quant.onnx"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, default=0)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--tls-cert", help="serve gRPC over TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="and this key")
    parser.add_argument("--ready-file", help="a file to write once every model answers")
    args = parser.parse_args()

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def detect(images):
        # The ONNX file takes one image at a time; Triton's dynamic batcher hands several.
        per_image = [session.run(None, {input_name: image[np.newaxis]}) for image in images]
        boxes, classes, scores, count = (np.concatenate([r[i] for r in per_image]) for i in range(4))
        return {
            "detection_boxes": boxes.astype(np.float32),
            "detection_classes": classes.astype(np.float32),
            "detection_scores": scores.astype(np.float32),
            "num_detections": count.reshape(-1, 1).astype(np.float32),
        }

    @batch
    def ssd(image):
        return detect(image)

    @batch
    def ssd_slow(image):
        time.sleep(1.0)
        return detect(image)

    @batch
    def unusable(image):
        return {"features": np.zeros((image.shape[0], 7), dtype=np.float32)}

    outputs = [
        Tensor(name="detection_boxes", dtype=np.float32, shape=(20, 4)),
        Tensor(name="detection_classes", dtype=np.float32, shape=(20,)),
        Tensor(name="detection_scores", dtype=np.float32, shape=(20,)),
        Tensor(name="num_detections", dtype=np.float32, shape=(1,)),
    ]
    image = [Tensor(name="image", dtype=np.uint8, shape=(300, 300, 3))]
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port or args.http_port + 2,
        log_verbose=0,
        grpc_use_ssl=bool(args.tls_cert),
        grpc_server_cert=args.tls_cert,
        grpc_server_key=args.tls_key,
    )
    with Triton(config=config) as triton:
        model_config = ModelConfig(max_batch_size=args.max_batch)
        triton.bind("ssd", ssd, image, outputs, config=model_config, strict=False)
        triton.bind("ssd_slow", ssd_slow, image, outputs, config=model_config, strict=False)
        triton.bind(
            "unusable",
            unusable,
            image,
            [Tensor(name="features", dtype=np.float32, shape=(7,))],
            config=model_config,
            strict=False,
        )
        triton.run()
        print("ready", flush=True)
        if args.ready_file:
            # Written whole under another name, then renamed: whoever sees it sees it complete.
            partial = args.ready_file + ".partial"
            pathlib.Path(partial).write_text("ready\n")
            pathlib.Path(partial).rename(args.ready_file)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
