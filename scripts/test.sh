#!/usr/bin/env bash
# Runs every test: fetches the test model once (cached, hash-checked); the UI's vitest tests;
# the Rust unit and integration tests; the official ollama/openai Python clients against
# `airlock serve`; the desktop app end to end under Xvfb through tauri-driver + WebKitWebDriver
# (its file dialogs answered with xdotool); then the packages: scripts/package.sh packs the
# same build, and tests/package/check.sh installs the .deb for real (as root), runs it and
# removes it again.
#
# llama.cpp takes minutes to build and is built again for every profile and feature set, so
# there is one build of it (scripts/build-env.sh: release, Vulkan): the tests, the app under test
# and the packages all link it. After the tests, the app is built as demo.sh builds it, and the
# run fails if that builds llama.cpp again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
AIRLOCK_TEST_MODEL="$(tests/fixtures/fetch-test-model.sh)"
# An instruct model with a tool-calling template, for the clients' tool tests.
AIRLOCK_INSTRUCT_MODEL="$(tests/fixtures/fetch-test-model.sh instruct)"
# Its larger sibling, which also answers from a tool's result (the MCP tests).
AIRLOCK_TOOL_MODEL="$(tests/fixtures/fetch-test-model.sh instruct-1.5b)"
export AIRLOCK_TEST_MODEL AIRLOCK_INSTRUCT_MODEL AIRLOCK_TOOL_MODEL

scripts/ui.sh --test

# A virtualenv outside the clone: the official Python clients (tests/compat) and the real MCP
# servers the integration tests run (`mcp-server-time`, and one on the `mcp` SDK).
venv="${AIRLOCK_TEST_VENV:-$HOME/.cache/airlock-test/venv}"
[ -x "$venv/bin/pytest" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check ollama openai anthropic pytest jinja2 langchain-ollama openai-agents prometheus-client "mcp>=2,<3" mcp-server-time
export AIRLOCK_TEST_PYTHON="$venv/bin/python"

source scripts/build-env.sh
clear_dangling
# Everything at once (examples too: the runner tests compare with bench/thin_loop.rs), then run.
cargo test "${cargo_flags[@]}" --no-run
cargo test "${cargo_flags[@]}" --lib --test integration

# The official Python clients against a real `airlock serve` (run below).
# `cargo test` built the binaries (the integration tests run them).
export AIRLOCK_BIN="$(cd "$target" && pwd)/release/airlock"
"$venv/bin/pytest" -q tests/compat

# The app as demo.sh builds it, after the test build: it must reuse that build's llama.cpp.
clear_dangling
build_log="$(mktemp)"
build_app 2>&1 | tee "$build_log"
if grep -q 'Compiling llama-cpp-sys-2' "$build_log"; then
  echo "test.sh: the app's build compiled llama-cpp-sys-2 again after the test build (one build was expected)" >&2
  exit 1
fi
echo "one build: the app's build reused the test build's llama-cpp-sys-2"
rm -f "$build_log"

# The desktop app: the real window under Xvfb, the binaries just built.
command -v tauri-driver >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/tauri-driver" ] || cargo install tauri-driver --locked
export AIRLOCK_DESKTOP_BIN="$(cd "$target" && pwd)/release/airlock-desktop"
scripts/with-display.sh cargo test --release --locked -p airlock-e2e -- --nocapture

# The packages, from the same build, installed and run as on the far side of the gap.
scripts/package.sh --no-build
scripts/with-display.sh tests/package/check.sh
