#!/usr/bin/env bash
# The Python environment the benchmark's "blocking recipe" comparison runs in: Debian's Python with
# its GStreamer bindings, plus onnxruntime and numpy from PyPI, in target/bench-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import onnxruntime, numpy, gi" 2>/dev/null; then
  echo "bench-env: creating $venv"
  /usr/bin/python3 -m venv --without-pip --system-site-packages "$venv" 2>/dev/null \
    || { apt-get install -y -qq python3-venv >/dev/null && /usr/bin/python3 -m venv --without-pip --system-site-packages "$venv"; }
  # Debian's venv may lack pip: install into it with the machine's pip.
  python3 -m pip install --quiet --root-user-action=ignore --target "$venv/lib/python3.11/site-packages" onnxruntime==1.31.1 "numpy<3"
fi
"$venv/bin/python" -c "import onnxruntime, numpy, gi" && echo "bench-env: ready ($venv)"
