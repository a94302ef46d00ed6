#!/usr/bin/env bash
# Tests the Debian package as a user gets it: builds it (scripts/package-deb.sh), installs it on
# this machine with apt, checks that GStreamer finds the plugin in the system path with no
# GST_PLUGIN_PATH, that its library dependencies are declared, and that pipelines detect objects
# with the packaged ONNX Runtime and models; then removes it again (unless it was installed before).
set -euo pipefail
cd "$(dirname "$0")/.."
package=gstreamer1.0-asyncdetect
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
fail() { echo "test-deb: FAILED: $*" >&2; exit 1; }

bash scripts/package-deb.sh --fast --quiet >/dev/null
version=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
deb="$PWD/target/debian/${package}_${version}-1_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || fail "no $deb"

was_installed=false
dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" && was_installed=true
scratch=$(mktemp -d)
cleanup() {
  $was_installed || sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$package" >/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb" >/dev/null

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
plugin="/usr/lib/$multiarch/gstreamer-1.0/libgstasyncdetect.so"
runtime="/usr/lib/$multiarch/$package/libonnxruntime.so"
[ -f "$plugin" ] && [ -f "$runtime" ] || fail "the package did not install $plugin and $runtime"

# Every library dependency dpkg-shlibdeps finds is declared by the package.
mkdir -p "$scratch/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$package" "$package" >"$scratch/shlibs/debian/control"
needed=$(cd "$scratch/shlibs" && dpkg-shlibdeps -O "$plugin" "$runtime" 2>/dev/null | sed 's/^shlibs:Depends=//')
declared=$(dpkg-query -W -f='${Depends}' "$package")
for dependency in $(echo "$needed" | tr ',' '\n' | sed 's/(.*//; s/ //g'); do
  grep -qx "$dependency" < <(tr ',' '\n' <<<"$declared" | sed 's/(.*//; s/ //g') ||
    fail "$package does not declare $dependency (dpkg-shlibdeps: $needed)"
done

# A user's environment: no GST_PLUGIN_PATH, no ORT_DYLIB_PATH, a fresh registry.
as_user() {
  env -i PATH="$PATH" HOME="$scratch" GST_REGISTRY="$scratch/registry.bin" "$@"
}
inspect=$(as_user gst-inspect-1.0 asyncdetect) || fail "gst-inspect-1.0 asyncdetect: $inspect"
# (/lib is /usr/lib on a merged-/usr system: GStreamer may name either.)
grep -Eq "Filename +(/usr)?/lib/$multiarch/gstreamer-1.0/libgstasyncdetect.so$" <<<"$inspect" || fail "gst-inspect-1.0 found the plugin elsewhere: $inspect"
grep -Eq "Version +$version(-|$)" <<<"$inspect" || fail "not version $version: $inspect"
for element in asyncdetect detectoverlay detectblur detectexport detectevents; do
  as_user gst-inspect-1.0 "$element" >/dev/null || fail "gst-inspect-1.0 $element"
done

# Pipelines from the system path: the built-in model, then NanoDet from the packaged models
# (with DL Streamer's property names), on the demo clip.
clip="$PWD/target/media/bikes.mp4"
models="/usr/share/$package/models"
run() {
  as_user GST_DEBUG=asyncdetect:4 GST_DEBUG_NO_COLOR=1 gst-launch-1.0 -m filesrc location="$clip" \
    ! decodebin ! videoconvert ! asyncdetect mode=sync "$@" ! fakesink 2>&1
}
for properties in "" "model=$models/nanodet_m_416.onnx labels-file=$models/coco80_labels.txt"; do
  # shellcheck disable=SC2086
  output=$(run $properties) || fail "pipeline with '$properties': $output"
  # (grep -q reads from a here-string: fed by a pipe, its early exit would fail the pipeline.)
  grep -q "with ONNX Runtime from $runtime" <<<"$output" ||
    fail "'$properties' did not use the packaged ONNX Runtime: $(grep Loaded <<<"$output")"
  results=$(grep '(element): asyncdetect, ' <<<"$output" | grep -c 'person' || true)
  [ "$results" -gt 0 ] || fail "no person detected with '$properties'"
  echo "test-deb: '${properties:-built-in model}': $results results with a person"
done
echo "test-deb: $(basename "$deb") installs $plugin; gst-inspect-1.0 and pipelines work from the system path"
