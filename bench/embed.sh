#!/usr/bin/env bash
# Embedding benchmark: 64 short inputs in one request through the embedding runner and through
# `airlock serve`'s /api/embed, against a thin llama.cpp loop embedding the same batch in one
# decode, on the test model unless a GGUF path is given. Prints inputs/s and ratios.
#   bench/embed.sh [MODEL.gguf] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$(tests/fixtures/fetch-test-model.sh)}"
threads="${2:-$(lscpu -p=core,socket | grep -v "^#" | sort -u | wc -l)}"  # physical cores
# The one build of scripts/build-env.sh, so llama.cpp is not built again for the benchmark.
source scripts/build-env.sh
cargo build "${cargo_flags[@]}" --bin airlock --example embed_bench >&2
dir="$target/release"
# On a machine whose AMX kernels fault, set AIRLOCK_BENCH_AVOID_AMX=1 (the server finds out by itself).
amx=()
[ -n "${AIRLOCK_BENCH_AVOID_AMX:-}" ] && amx=(--avoid-amx)
"$dir/examples/embed_bench" --airlock "$dir/airlock" --model "$model" --threads "$threads" "${amx[@]}"
