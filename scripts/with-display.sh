#!/usr/bin/env bash
# Runs a command with an X display: the current one, or a fresh Xvfb on a free display number
# (stopped afterwards). The desktop app's end-to-end test and benchmark need one.
set -euo pipefail
if [ -n "${DISPLAY:-}" ]; then exec "$@"; fi
n=99; while [ -e "/tmp/.X$n-lock" ] || [ -e "/tmp/.X11-unix/X$n" ]; do n=$((n + 1)); done
Xvfb ":$n" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true' EXIT
export DISPLAY=":$n"
for _ in $(seq 100); do [ -e "/tmp/.X11-unix/X$n" ] && break; sleep 0.1; done
"$@"
