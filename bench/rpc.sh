#!/usr/bin/env bash
# RPC benchmark: one model with every layer on two `airlock rpc-worker`s on loopback (the head,
# `airlock serve --rpc` with AIRLOCK_GPU=off, keeps none), against the same server running it
# locally, same model and threads per process. Prints prefill and decode rates and their ratios
# to the local run, from one run (medians of RUNS requests each, after one warm-up).
#   bench/rpc.sh [MODEL.gguf] [THREADS]
# Env: RUNS (default 3), N_PREDICT (default 64).
# Loopback shows what the protocol itself costs; a real network adds its latency to every token.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$(tests/fixtures/fetch-test-model.sh)}"
threads="${2:-2}"
# The one build of scripts/build-env.sh, so llama.cpp is not built again for the benchmark.
source scripts/build-env.sh
cargo build "${cargo_flags[@]}" --bin airlock >&2
airlock="$target/release/airlock"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }

export AIRLOCK_MODELS="$tmp/models" AIRLOCK_CONFIG="$tmp/config" AIRLOCK_AUDIT_LOG="$tmp/audit.jsonl"
"$airlock" import "$model" --name gemma3:270m --link >&2

# serve NAME [ARGS…]: an `airlock serve` on a free port, $port.
serve() {
  local name="$1"; shift
  port=$(free_port)
  AIRLOCK_HOST="127.0.0.1:$port" AIRLOCK_THREADS="$threads" AIRLOCK_GPU=off AIRLOCK_NUM_PARALLEL=1 \
    "$airlock" serve "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
}

measure() {
  python3 - "$1" "${RUNS:-3}" "${N_PREDICT:-64}" <<'PY'
import http.client, json, statistics, sys
port, runs, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
# ~500 prompt tokens: prefill is measured on a real batch, not a handful of tokens.
prompt = "Summarise the following notes.\n" + " ".join(f"Note {i}: the valve on line {i % 7} was checked and found in order." for i in range(40))
def once():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    body = {"model": "gemma3:270m", "prompt": prompt, "stream": False, "raw": True,
            "options": {"temperature": 0, "num_predict": n, "num_ctx": 2048}}
    c.request("POST", "/api/generate", json.dumps(body), {"Content-Type": "application/json"})
    r = json.loads(c.getresponse().read())
    if "error" in r:
        sys.exit(r["error"])
    c.request("GET", "/api/ps")
    devices = json.loads(c.getresponse().read())["models"][0]["placement"]["devices"]
    print("placement: " + (", ".join(f"{d['name']} {d['layers']} layers" for d in devices) or "this machine's CPU"), file=sys.stderr)
    # A fresh prompt each time: the cached prefix would otherwise skip the prefill.
    c.request("POST", "/api/generate", json.dumps({"model": "gemma3:270m", "keep_alive": 0}), {"Content-Type": "application/json"})
    c.getresponse().read()
    return r["prompt_eval_count"] / r["prompt_eval_duration"] * 1e9, r["eval_count"] / r["eval_duration"] * 1e9, r["prompt_eval_count"]
once()
got = [once() for _ in range(runs)]
print(statistics.median(g[0] for g in got), statistics.median(g[1] for g in got), got[0][2])
PY
}

serve local
read -r local_prefill local_decode prompt_tokens < <(measure "$port" 2>/dev/null)
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

workers=()
for _ in 1 2; do
  wport=$(free_port)
  # --avoid-amx: this build's AMX kernels die with SIGILL under some hypervisors (see DESIGN).
  "$airlock" rpc-worker --port "$wport" --threads "$threads" --avoid-amx >"$tmp/worker-$wport.log" 2>&1 &
  pids+=($!)
  wait_port "$wport"
  workers+=("127.0.0.1:$wport")
done
serve head --rpc "$(IFS=,; echo "${workers[*]}")"
read -r rpc_prefill rpc_decode _ < <(measure "$port" 2>"$tmp/placement")

python3 - "$local_prefill" "$local_decode" "$rpc_prefill" "$rpc_decode" "$prompt_tokens" "$threads" <<'PY'
import sys
lp, ld, rp, rd = map(float, sys.argv[1:5])
print(f"prompt {sys.argv[5]} tokens, {sys.argv[6]} threads per process")
print(f"{'':28}{'prefill tok/s':>15}{'decode tok/s':>15}")
print(f"{'local (CPU)':28}{lp:15.1f}{ld:15.1f}")
print(f"{'two loopback RPC workers':28}{rp:15.1f}{rd:15.1f}")
print(f"{'ratio RPC / local':28}{rp / lp:15.2f}{rd / ld:15.2f}")
PY
tail -1 "$tmp/placement"
