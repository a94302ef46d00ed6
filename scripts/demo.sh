#!/usr/bin/env bash
# Sets up a fresh Debian machine (scripts/setup.sh), builds the plugin and runs the detector over a
# real street clip, printing what it detects as it goes, and writes an annotated video and a JSON
# Lines file of the detections into target/demo/. Extra arguments go to examples/detect_file.rs
# (e.g. --realtime, threshold=0.6).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --lib --examples
mkdir -p target/demo
./target/release/examples/detect_file target/media/bikes.mp4 \
  --output target/demo/annotated.mp4 --json target/demo/detections.jsonl "$@"
echo
echo "Annotated video: target/demo/annotated.mp4; detections: target/demo/detections.jsonl"
echo "The plugin is target/release/libgstasyncdetect.so; try it with gst-launch-1.0:"
echo "  GST_PLUGIN_PATH=$PWD/target/release gst-launch-1.0 filesrc location=target/media/bikes.mp4 ! decodebin ! videoconvert ! asyncdetect ! detectoverlay ! videoconvert ! autovideosink"
