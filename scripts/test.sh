#!/usr/bin/env bash
# The whole test suite: unit tests, fuzz corpus replays, short libFuzzer runs, and the real-kernel
# tests in network namespaces (created and removed by each test). Needs root for the namespaces.
# Usage: scripts/test.sh [extra ctest args, e.g. -L unit or -R passthrough]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Unit tests in parallel; namespaced tests are RUN_SERIAL (they move hundreds of MB on 2 cores).
exec ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 1200 "$@"
