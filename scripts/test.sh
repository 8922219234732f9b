#!/usr/bin/env bash
# Runs every test: fetches the test model once (cached, hash-checked), then the Rust unit and
# integration tests of the CLI build.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

AIRLOCK_TEST_MODEL="$(tests/fixtures/fetch-test-model.sh)"
export AIRLOCK_TEST_MODEL
cargo test --no-default-features --locked
