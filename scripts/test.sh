#!/usr/bin/env bash
# Runs every test: fetches the test model once (cached, hash-checked); the UI's vitest tests;
# the Rust unit and integration tests of the CLI build; the official ollama/openai Python
# clients against `airlock serve`; then the desktop app end to end under Xvfb through
# tauri-driver + WebKitWebDriver.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
AIRLOCK_TEST_MODEL="$(tests/fixtures/fetch-test-model.sh)"
export AIRLOCK_TEST_MODEL

scripts/ui.sh --test

# llama-cpp-sys-2's build script hard-links its libraries into the target folder and trips over
# links a build with other features left dangling there: clear those first.
target="${CARGO_TARGET_DIR:-target}"
clear_dangling() { if [ -d "$target" ]; then find "$target" -maxdepth 3 -xtype l -name "lib*.so*" -delete; fi; }
clear_dangling
cargo test --no-default-features --locked

# The official Python clients against a real `airlock serve` (a virtualenv outside the clone).
venv="${AIRLOCK_TEST_VENV:-$HOME/.cache/airlock-test/venv}"
[ -x "$venv/bin/pytest" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check ollama openai pytest
# `cargo test` built the binary (the integration tests run it); another `cargo build` would
# resolve features differently and rebuild llama.cpp.
export AIRLOCK_BIN="$(cd "$target" && pwd)/debug/airlock"
"$venv/bin/pytest" -q tests/compat

# The desktop app: its unit tests, then the real window under Xvfb.
command -v tauri-driver >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/tauri-driver" ] || cargo install tauri-driver --locked
clear_dangling
scripts/with-display.sh cargo test --locked --lib --test e2e -- --nocapture desktop:: import_hardware_chat_and_restart
