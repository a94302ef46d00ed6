#!/usr/bin/env bash
# Sets up a fresh Debian machine (scripts/setup.sh), builds the plugin and runs the detector over a
# real street clip in real time, printing what it detects as it goes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --lib --example detect_file
./target/release/examples/detect_file target/media/bikes.mp4 "$@"
echo
echo "The plugin is target/release/libgstasyncdetect.so; try it with gst-launch-1.0:"
echo "  GST_PLUGIN_PATH=$PWD/target/release gst-launch-1.0 filesrc location=target/media/bikes.mp4 ! decodebin ! videoconvert ! asyncdetect ! fakesink"
