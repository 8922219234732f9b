#!/usr/bin/env bash
# Builds the `airlock` CLI, fetches the demo model (Gemma 3 270M, hash-checked) and imports it
# into the store, then lists and shows it. The desktop app replaces this with a window.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --no-default-features --bin airlock
bin="${CARGO_TARGET_DIR:-target}/release/airlock"
model="$(tests/fixtures/fetch-test-model.sh)"
"$bin" import "$model" --name gemma3:270m
"$bin" list
"$bin" show gemma3:270m
