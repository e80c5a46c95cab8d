#!/usr/bin/env bash
# PLACEHOLDER for `make bench`: the benchmark engineer replaces this script
# with the chatbench scenarios (see docs/benchmarks.md). Until then it fails
# on purpose, so that nobody mistakes it for a benchmark run.
set -euo pipefail
echo "bench: scripts/bench.sh is a placeholder; the chatbench scenarios are not written yet" >&2
exit 1
