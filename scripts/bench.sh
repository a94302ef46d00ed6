#!/usr/bin/env bash
# Sets up (scripts/setup.sh, scripts/bench-env.sh) and runs the full benchmark: about 25 minutes on
# 2 cores (a 10-minute memory run included). Prints markdown tables and a goal list; exits non-zero
# if a goal is missed. Name tables to run only those, e.g. `bash scripts/bench.sh live memory`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/bench-env.sh
cargo bench --bench asyncdetect -- "$@"
