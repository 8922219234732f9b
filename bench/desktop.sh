#!/usr/bin/env bash
# The desktop app's figures from the release build: window start to interactive, idle memory,
# the UI's cost per streamed token against the time between tokens (printed by the end-to-end
# test, tests/e2e, driving the real window), then the UI's synthetic stream benchmark (vitest):
# the real streaming path against appending the same pieces to a plain text node.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ui.sh
source scripts/build-env.sh
clear_dangling
build_app
AIRLOCK_TEST_MODEL="$(tests/fixtures/fetch-test-model.sh)"
export AIRLOCK_TEST_MODEL
export AIRLOCK_BIN="$(cd "$target" && pwd)/release/airlock"
export AIRLOCK_DESKTOP_BIN="$(cd "$target" && pwd)/release/airlock-desktop"
scripts/with-display.sh cargo test --release --locked -p airlock-e2e -- --nocapture 2>&1 | sed -n '/== desktop figures/,/^stop:/p'
npm --prefix ui run --silent bench:stream
