#!/usr/bin/env bash
# Builds the web UI into ui/dist (the desktop binary embeds it at compile time). With `--test`,
# runs svelte-check (type errors fail the run) and its vitest tests first.
set -euo pipefail
cd "$(dirname "$0")/../ui"
npm ci --no-audit --no-fund --loglevel=error
if [ "${1:-}" = "--test" ]; then npm run check -- --fail-on-warnings; npm test; fi
npm run build
