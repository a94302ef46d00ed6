#!/usr/bin/env bash
# Sets up a fresh Debian machine (scripts/setup.sh) and runs every check CI runs: formatting, lints,
# and all tests (unit tests, real GStreamer pipelines on real frames with the real model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --lib
# Some tests run programs: the rtsp_camera example, and gst-launch-1.0 loading the plugin from
# target/debug. `cargo test --all-targets` builds examples only as test harnesses and the library
# only for linking, so build the programs and the plugin itself first.
cargo build --lib --examples
# The benchmark's comparison with the Python appsink + onnxruntime recipe needs its environment.
bash scripts/bench-env.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# GLib criticals and warnings abort the test that caused them. The benchmark runs too, shortened
# (it only checks that the program works; timings are not asserted here).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
G_DEBUG=fatal_warnings cargo test --all-targets 2>&1 | tee "$log"
# The plugin loads in gst-inspect (what users see first).
GST_PLUGIN_PATH="$PWD/target/release" gst-inspect-1.0 asyncdetect >/dev/null
# The Debian package: built, installed on this machine, checked from the system path, removed.
bash scripts/test-deb.sh
# One closing line for all test binaries together.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
