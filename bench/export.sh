#!/usr/bin/env bash
# Export / split-volume benchmark (issue 6). Rerunnable; not a timed test.
#  1. `airlock export MODEL --out x.zip` vs `cp` of the model file (goal: ≤ 1.5×)
#  2. import from split volumes vs from the single zip (goal: ≈ 1×)
# Best of 3 each (BENCH_REPS=N for more), warm page cache, all on the same filesystem (a temp dir under $BENCH_TMP or
# target/). Prints the times and the ratios.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# The one build of scripts/build-env.sh, so llama.cpp is not built again for the benchmark.
source scripts/build-env.sh
cargo build "${cargo_flags[@]}" --bin airlock >&2
bin="$(cd "$target" && pwd)/release/airlock"
model="$(tests/fixtures/fetch-test-model.sh)"

mkdir -p "$target"
work="$(mktemp -d "${BENCH_TMP:-$(cd "$target" && pwd)}/bench-export.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export AIRLOCK_MODELS="$work/store" AIRLOCK_CONFIG="$work/config"
unset OLLAMA_MODELS
"$bin" import "$model" --name bench:270m >/dev/null 2>&1
cat "$model" "$AIRLOCK_MODELS"/blobs/* >/dev/null # warm the cache

# best_of CMD…: runs CMD 3 times after `fresh` and prints the fastest wall time in seconds.
best_of() {
  local best=""
  for _ in $(seq "${BENCH_REPS:-3}"); do
    fresh
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    best=$(python3 -c "t=$t1-$t0; b='$best'; print(min(t, float(b)) if b else t)")
  done
  printf '%.3f' "$best"
}

fresh() { rm -rf "$work/out" "$work/imp"; mkdir -p "$work/out"; sync; }
t_cp=$(best_of cp "$model" "$work/out/model.gguf")
# Export fsyncs what it writes (so a bundle on a USB stick is complete); compare with cp + fsync too.
cp_sync() { cp "$model" "$work/out/model.gguf" && sync "$work/out/model.gguf"; }
t_cps=$(best_of cp_sync)
t_export=$(best_of "$bin" export bench:270m --out "$work/out/x.zip")
size=$(stat -c %s "$model")

# Import: build both bundles once, then time imports into a fresh store.
mkdir -p "$work/bundles"
[ -f "$work/bundles/x.zip" ] || "$bin" export bench:270m --out "$work/bundles/x.zip" >/dev/null 2>&1
[ -f "$work/bundles/v.zip.001" ] || "$bin" export bench:270m --out "$work/bundles/v.zip" --split-size 64M >/dev/null 2>&1
import_into() { AIRLOCK_MODELS="$work/imp" "$bin" import "$1"; }
t_import_zip=$(best_of import_into "$work/bundles/x.zip")
t_import_vol=$(best_of import_into "$work/bundles/v.zip.001")
nvol=$(ls "$work/bundles"/v.zip.0* | wc -l)

python3 - "$size" "$t_cp" "$t_export" "$t_import_zip" "$t_import_vol" "$nvol" "$t_cps" <<'PY'
import sys
size, cp, exp, iz, iv, nvol, cps = int(sys.argv[1]), *map(float, sys.argv[2:6]), int(sys.argv[6]), float(sys.argv[7])
mb = size / 1e6
print(f"model: {mb:.0f} MB, {nvol} volumes of 64 MiB for the split import (best of {__import__('os').environ.get('BENCH_REPS','3')}, warm cache)")
print(f"cp of the model file            {cp:7.3f} s  ({mb/cp:6.0f} MB/s)")
print(f"cp + fsync of the model file    {cps:7.3f} s  ({mb/cps:6.0f} MB/s)")
print(f"airlock export --out x.zip      {exp:7.3f} s  ({mb/exp:6.0f} MB/s)  ratio export/cp = {exp/cp:.2f}x (goal <= 1.5x), export/(cp+fsync) = {exp/cps:.2f}x")
print(f"airlock import x.zip            {iz:7.3f} s  ({mb/iz:6.0f} MB/s)")
print(f"airlock import v.zip.001        {iv:7.3f} s  ({mb/iv:6.0f} MB/s)  ratio volumes/zip = {iv/iz:.2f}x (goal ~1x)")
PY
