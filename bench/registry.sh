#!/usr/bin/env bash
# Registry throughput: `airlock push` and `airlock pull` of the test model against Debian's
# docker-registry on loopback, each as a ratio to curl moving the same blob to/from the same
# registry in the same run (best of $RUNS). Pull includes what curl does not do: hashing every
# byte, GGUF validation, fsync and publishing; push includes the HEAD checks and the manifest.
#   AIRLOCK_BIN=…/airlock AIRLOCK_TEST_MODEL=…/gemma-3-270m-q4_k_m.gguf bench/registry.sh
set -euo pipefail
BIN=${AIRLOCK_BIN:-${CARGO_TARGET_DIR:-target}/debug/airlock}
MODEL=${AIRLOCK_TEST_MODEL:-$HOME/.cache/airlock-test/gemma-3-270m-q4_k_m.gguf}
RUNS=${RUNS:-3}
work=$(mktemp -d)
reg_pid=""
cleanup() { [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
# A registry with empty storage (so each push uploads everything).
fresh_registry() {
  [ -n "$reg_pid" ] && { kill "$reg_pid"; wait "$reg_pid" 2>/dev/null || true; }
  rm -rf "$work/storage"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s/storage\nhttp:\n  addr: 127.0.0.1:%s\n' "$work" "$port" >"$work/config.yml"
  /usr/bin/docker-registry serve "$work/config.yml" >/dev/null 2>&1 &
  reg_pid=$!
  for _ in $(seq 200); do curl -sf "$url/v2/" >/dev/null && return; sleep 0.05; done
  echo "docker-registry did not start" >&2; exit 1
}
now() { date +%s.%N; }
best=""
keep_best() { best=$(python3 -c "print(min(float(x) for x in '$1 ${best:-inf}'.split()))"); }

export DOCKER_CONFIG="$work/docker" AIRLOCK_REGISTRY="$url"
unset AIRLOCK_REGISTRY_AUTH
AIRLOCK_MODELS="$work/seed" "$BIN" import "$MODEL" --name gemma3:270m --link >/dev/null 2>&1
digest="sha256:$(sha256sum "$MODEL" | cut -d' ' -f1)"
size=$(stat -c %s "$MODEL")

best=""; for _ in $(seq "$RUNS"); do
  fresh_registry; t0=$(now)
  loc=$(curl -sf -X POST -D - -o /dev/null "$url/v2/bench/curl/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case $loc in /*) loc="$url$loc";; esac
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' -T "$MODEL" "$loc&digest=$digest" -o /dev/null
  keep_best "$(python3 -c "print($(now)-$t0)")"
done; curl_push=$best
best=""; for _ in $(seq "$RUNS"); do
  fresh_registry; t0=$(now)
  AIRLOCK_MODELS="$work/seed" "$BIN" push gemma3:270m >/dev/null 2>&1
  keep_best "$(python3 -c "print($(now)-$t0)")"
done; airlock_push=$best

# The registry now holds the model (from the last push).
best=""; for _ in $(seq "$RUNS"); do
  rm -f "$work/blob"; sync; t0=$(now)
  curl -sf -o "$work/blob" "$url/v2/library/gemma3/blobs/$digest"
  keep_best "$(python3 -c "print($(now)-$t0)")"
done; curl_pull=$best
best=""; for _ in $(seq "$RUNS"); do
  rm -rf "$work/far"; sync; t0=$(now)
  AIRLOCK_MODELS="$work/far" "$BIN" pull gemma3:270m >/dev/null 2>&1
  keep_best "$(python3 -c "print($(now)-$t0)")"
done; airlock_pull=$best

python3 - "$size" "$curl_push" "$airlock_push" "$curl_pull" "$airlock_pull" <<'EOF'
import sys
size, cpush, apush, cpull, apull = int(sys.argv[1]), *map(float, sys.argv[2:])
mb = size / 1e6
print(f"blob: {mb:.0f} MB, best of runs, loopback docker-registry")
print(f"push: airlock {mb/apush:7.1f} MB/s  curl {mb/cpush:7.1f} MB/s  ratio airlock/curl {cpush/apush:.2f}")
print(f"pull: airlock {mb/apull:7.1f} MB/s  curl {mb/cpull:7.1f} MB/s  ratio airlock/curl {cpull/apull:.2f}")
EOF
