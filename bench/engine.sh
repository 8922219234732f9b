#!/usr/bin/env bash
# Engine benchmark: the runner (through its protocol) against the thin greedy loop over the same
# llama.cpp build, on the test model unless a GGUF path is given. Prints ratios.
#   bench/engine.sh [MODEL.gguf] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$(tests/fixtures/fetch-test-model.sh)}"
threads="${2:-$(lscpu -p=core,socket | grep -v "^#" | sort -u | wc -l)}"  # physical cores
# The one build of scripts/build-env.sh, so llama.cpp is not built again for the benchmark.
source scripts/build-env.sh
cargo build "${cargo_flags[@]}" --bin airlock --example thin_loop --example engine_bench >&2
dir="$target/release"
# On a machine whose AMX kernels fault (the supervisor detects it; a bare runner cannot), set
# AIRLOCK_BENCH_AVOID_AMX=1.
amx=()
[ -n "${AIRLOCK_BENCH_AVOID_AMX:-}" ] && amx=(--avoid-amx)
"$dir/examples/engine_bench" --airlock "$dir/airlock" --thin-loop "$dir/examples/thin_loop" \
  --model "$model" --threads "$threads" "${amx[@]}"
