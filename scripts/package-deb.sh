#!/usr/bin/env bash
# Builds the Debian package target/debian/gstreamer1.0-asyncdetect_<version>-1_<arch>.deb with
# cargo-deb (installed into target/tools the first time). Install it with
#   sudo apt-get install ./target/debian/gstreamer1.0-asyncdetect_*.deb
# Extra arguments go to cargo-deb (e.g. --fast for quicker, larger compression).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
ORT_VERSION=1.31.1
ORT_DIR=${ORT_DIR:-/usr/local/lib/onnxruntime-$ORT_VERSION}

bash scripts/setup.sh >/dev/null

# cargo-deb reads the plugin's library dependencies with dpkg-shlibdeps (dpkg-dev).
if ! command -v dpkg-shlibdeps >/dev/null; then
  sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi
tools="$PWD/target/tools"
if [ "$("$tools/bin/cargo-deb" --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "package-deb: installing cargo-deb $CARGO_DEB_VERSION into target/tools"
  cargo install --quiet --locked --root "$tools" --version "$CARGO_DEB_VERSION" cargo-deb
fi

# The package carries the ONNX Runtime library scripts/setup.sh installed, with its licence and
# third-party notices (Cargo.toml's [package.metadata.deb] assets).
staging=target/deb-staging
rm -rf "$staging"
mkdir -p "$staging/onnxruntime"
cp "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" "$staging/libonnxruntime.so"
cp "$ORT_DIR/LICENSE" "$ORT_DIR/ThirdPartyNotices.txt" "$staging/onnxruntime/"

# Multiarch: usr/lib/ paths become usr/lib/<tuple>/, where GStreamer looks for system plugins.
"$tools/bin/cargo-deb" --multiarch=same "$@"
