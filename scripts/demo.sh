#!/usr/bin/env bash
# Builds the desktop app (and the CLI), fetches the demo model (Gemma 3 270M, hash-checked),
# imports it into the store, and opens the app ready to chat. Without a display it stops after
# the import and says how to start the app.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/ui.sh
source scripts/build-env.sh
clear_dangling
build_app
model="$(tests/fixtures/fetch-test-model.sh)"
"$target/release/airlock" import "$model" --name gemma3:270m
"$target/release/airlock" list
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "No display here: start the app on a desktop with $target/release/airlock-desktop"
  exit 0
fi
exec "$target/release/airlock-desktop"
