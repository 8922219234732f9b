#!/usr/bin/env bash
# GPU benchmark: the engine benchmark (runner vs the thin llama.cpp loop, bench/engine.rs) once
# with every layer on the GPU and once on the CPU, from the same build (scripts/build-env.sh:
# release, Vulkan), then decode and prefill GPU/CPU ratios. Run it on a machine with a GPU; on one
# without, `GGML_VK_VISIBLE_DEVICES=0` with Mesa's lavapipe exercises the path (slowly).
#   bench/gpu.sh [MODEL.gguf] [THREADS]      (AIRLOCK_BENCH_REPS=N: best of N, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$(tests/fixtures/fetch-test-model.sh)}"
threads="${2:-$(lscpu -p=core,socket | grep -v "^#" | sort -u | wc -l)}"  # physical cores
source scripts/build-env.sh
cargo test "${cargo_flags[@]}" --no-run >&2
dir="$(cd "$target" && pwd)/release"
amx=()
[ -n "${AIRLOCK_BENCH_AVOID_AMX:-}" ] && amx=(--avoid-amx)
run() { "$dir/examples/engine_bench" --airlock "$dir/airlock" --thin-loop "$dir/examples/thin_loop" \
          --model "$model" --threads "$threads" --reps "${AIRLOCK_BENCH_REPS:-3}" --gpu-layers "$1" "${amx[@]}"; }
echo "== GPU (all layers)" >&2; gpu="$(run 999)"; echo "$gpu" >&2
echo "== CPU" >&2; cpu="$(run 0)"; echo "$cpu" >&2
rate() { grep "^$1" <<<"$2" | sed -E 's/.*runner ([0-9.]+) tok\/s.*/\1/'; }
for what in prefill decode; do
  awk -v w="$what" -v g="$(rate "$what" "$gpu")" -v c="$(rate "$what" "$cpu")" \
    'BEGIN { printf "%s: runner on the GPU %.1f tok/s vs on the CPU %.1f tok/s = %.2fx\n", w, g, c, g / c }'
done
