#!/usr/bin/env bash
# Verified import of the test model vs `cp` of the same file and vs `cp` then `sha256sum`
# (the two-pass way); then the model split in 3 gguf-split parts, imported merged into one
# blob, vs `cat` of the parts plus `sha256sum`. Warm page cache, best of N runs each, ratios
# from this one run.
#   bench/import.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
# The one build of scripts/build-env.sh, so llama.cpp is not built again for the benchmark.
source scripts/build-env.sh
cargo build "${cargo_flags[@]}" --bin airlock --example gguf_split >&2
bin="$target/release/airlock"
model="$(tests/fixtures/fetch-test-model.sh)"
work="$(mktemp -d "${TMPDIR:-/tmp}/airlock-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cat "$model" >/dev/null # warm the cache

now() { date +%s.%N; }
best() { # best wall time of $runs runs of "$@", with a clean target each time
  local best=999999 t0 t1 d
  for _ in $(seq "$runs"); do
    rm -rf "$work/dst" && mkdir -p "$work/dst"
    sync
    t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    best=$(awk -v a="$t0" -v b="$t1" -v m="$best" 'BEGIN { d = b - a; print (d < m ? d : m) }')
  done
  echo "$best"
}

cp_only=$(best cp "$model" "$work/dst/model.gguf")
cp_hash=$(best sh -c "cp '$model' '$work/dst/model.gguf' && sha256sum '$work/dst/model.gguf'")
import=$(best env AIRLOCK_MODELS="$work/dst" "$bin" import "$model" --name bench:latest)
# The floor: SHA-256 of the file alone (an import can be no faster than hashing every byte).
hash_only=$(best sha256sum "$model")

# A split model: merged on import (one blob, as the store keeps it) vs joining and hashing by hand.
mkdir -p "$work/parts"
"$target/release/examples/gguf_split" "$model" 3 "$work/parts" bench-split >/dev/null
parts=("$work"/parts/bench-split-0000?-of-00003.gguf)
cat "${parts[@]}" >/dev/null # warm the cache
cat_hash=$(best sh -c "cat ${parts[*]} > '$work/dst/joined' && sha256sum '$work/dst/joined'")
split_import=$(best env AIRLOCK_MODELS="$work/dst" "$bin" import "${parts[0]}" --name bench-split:latest)

size=$(stat -c %s "$model")
awk -v size="$size" -v runs="$runs" -v name="$(basename "$model")" -v cp="$cp_only" -v cph="$cp_hash" -v imp="$import" -v floor="$hash_only" -v cath="$cat_hash" -v simp="$split_import" 'BEGIN {
  printf "test model: %s (%d bytes), best of %d runs, warm cache\n", name, size, runs
  printf "%-28s %8.3f s  %7.0f MB/s\n", "cp", cp, size / cp / 1e6
  printf "%-28s %8.3f s  %7.0f MB/s\n", "cp + sha256sum", cph, size / cph / 1e6
  printf "%-28s %8.3f s  %7.0f MB/s\n", "airlock import (verified)", imp, size / imp / 1e6
  printf "%-28s %8.3f s  %7.0f MB/s\n", "sha256sum (the hash floor)", floor, size / floor / 1e6
  printf "ratio import / cp:               %.2fx (goal <= 1.5x)\n", imp / cp
  printf "ratio import / sha256sum:        %.2fx (hashing alone: the floor)\n", imp / floor
  printf "ratio import / (cp + sha256sum): %.2fx\n", imp / cph
  printf "\nsplit model, 3 parts (merged into one blob on import)\n"
  printf "%-28s %8.3f s  %7.0f MB/s\n", "cat parts + sha256sum", cath, size / cath / 1e6
  printf "%-28s %8.3f s  %7.0f MB/s\n", "airlock import (merged)", simp, size / simp / 1e6
  printf "ratio split import / (cat + sha256sum): %.2fx\n", simp / cath
}'
