#!/usr/bin/env bash
# Embedding benchmark: 64 short inputs in one request through the embedding runner and through
# `airlock serve`'s /api/embed, against a thin llama.cpp loop embedding the same batch in one
# decode, on the test model unless a GGUF path is given. Prints inputs/s and ratios.
#   bench/embed.sh [MODEL.gguf] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$(tests/fixtures/fetch-test-model.sh)}"
threads="${2:-$(lscpu -p=core,socket | grep -v "^#" | sort -u | wc -l)}"  # physical cores
cargo build --release --no-default-features --bin airlock --example embed_bench >&2
dir="${CARGO_TARGET_DIR:-target}/release"
# On a machine whose AMX kernels fault, set AIRLOCK_BENCH_AVOID_AMX=1 (the server finds out by itself).
amx=()
[ -n "${AIRLOCK_BENCH_AVOID_AMX:-}" ] && amx=(--avoid-amx)
"$dir/examples/embed_bench" --airlock "$dir/airlock" --model "$model" --threads "$threads" "${amx[@]}"
