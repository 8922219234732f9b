# Sourced by the benchmarks that start `airlock serve`: the binary ($AIRLOCK_BIN, one already
# built with its backend modules beside it, else built here), a temporary store ($AIRLOCK_MODELS,
# removed on exit with the server in $server), free_port and wait_for.
source scripts/build-env.sh
if [ -n "${AIRLOCK_BIN:-}" ]; then bin="$AIRLOCK_BIN"; else cargo build "${cargo_flags[@]}" --bin airlock >&2; bin="$target/release/airlock"; fi
tmp=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export AIRLOCK_MODELS="$tmp/models"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits until URL answers (the server is up), two minutes at most.
wait_for() {
  for _ in $(seq 1200); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1 within two minutes" >&2; return 1
}
