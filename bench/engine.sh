#!/usr/bin/env bash
# Engine benchmark: the runner (through its protocol) against the thin greedy loop over the same
# llama.cpp build, on the test model unless a GGUF path is given. Prints ratios.
#   bench/engine.sh [MODEL.gguf] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$(tests/fixtures/fetch-test-model.sh)}"
threads="${2:-$(lscpu -p=core,socket | grep -v "^#" | sort -u | wc -l)}"  # physical cores
cargo build --release --no-default-features --bin airlock --example thin_loop --example engine_bench >&2
dir="${CARGO_TARGET_DIR:-target}/release"
# On a machine whose AMX kernels fault (the supervisor detects it; a bare runner cannot), set
# AIRLOCK_BENCH_AVOID_AMX=1.
amx=()
[ -n "${AIRLOCK_BENCH_AVOID_AMX:-}" ] && amx=(--avoid-amx)
"$dir/examples/engine_bench" --airlock "$dir/airlock" --thin-loop "$dir/examples/thin_loop" \
  --model "$model" --threads "$threads" "${amx[@]}"
