#!/usr/bin/env bash
# Sets up (scripts/setup.sh, scripts/bench-env.sh) and runs the full benchmark: about 35 minutes on
# 2 cores (a 10-minute memory run included). Prints markdown tables and a goal list; exits non-zero
# if a goal is missed. Name tables to run only those, e.g. `bash scripts/bench.sh live memory`.
# A full run (no table named) then runs the soak test: 30 minutes of real-time 1080p30 with caps
# changes and seeks (SOAK_SECONDS to change; SOAK_SECONDS=0 to skip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/bench-env.sh
status=0
cargo bench --bench asyncdetect -- "$@" || status=$?
if [ $# -eq 0 ] && [ "${SOAK_SECONDS:-1800}" != 0 ]; then
  SOAK_SECONDS=${SOAK_SECONDS:-1800} cargo test --release --test soak -- --ignored --nocapture || status=$?
fi
exit $status
