#!/usr/bin/env bash
# KV cache types: `airlock serve` with AIRLOCK_KV_CACHE_TYPE f16, q8_0 and q4_0, the test model
# at a 32k context: the runner's resident memory after a ~1,000-token prompt, prefill and decode
# speed (Ollama's own timings in the final chunk), each as a ratio of f16 in this one run.
#   bench/kv_cache.sh [MODEL.gguf] [THREADS] [NUM_CTX]
# Then upstream llama-server with the same cache types (bench/llama-server.sh builds it;
# AIRLOCK_BENCH_NO_LLAMA_SERVER=1 skips it).
# Goal (issue 28): q8_0 ≤ 0.55× the f16 cache's bytes with decode ≥ 0.95×.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$(tests/fixtures/fetch-test-model.sh)}"
threads="${2:-2}"
num_ctx="${3:-32768}"
source bench/serve-env.sh
"$bin" import "$model" --name bench:latest --link >/dev/null 2>&1

for kv in f16 q8_0 q4_0; do
  port=$(free_port)
  AIRLOCK_HOST="127.0.0.1:$port" AIRLOCK_THREADS="$threads" AIRLOCK_NUM_PARALLEL=1 AIRLOCK_KV_CACHE_TYPE="$kv" "$bin" serve >"$tmp/serve-$kv.log" 2>&1 &
  server=$!
  wait_for "http://127.0.0.1:$port/api/version"
  python3 - "$port" "$kv" "$num_ctx" "$server" >>"$tmp/results" <<'PY'
import json, subprocess, sys, urllib.request
port, kv, num_ctx, server = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
prompt = " ".join(f"Line {i}: the pump in hall {i % 7} was checked and found in order." for i in range(80))
body = {"model": "bench:latest", "prompt": prompt, "stream": False, "options": {"num_ctx": num_ctx, "num_predict": 64, "temperature": 0, "seed": 1}}
req = urllib.request.Request(f"http://127.0.0.1:{port}/api/generate", json.dumps(body).encode(), {"Content-Type": "application/json"})
r = json.load(urllib.request.urlopen(req, timeout=600))
runner = subprocess.run(["pgrep", "-P", server, "-f", "runner"], capture_output=True, text=True).stdout.split()
rss = 0
for line in open(f"/proc/{runner[0]}/status"):
    if line.startswith("VmRSS:"): rss = int(line.split()[1]) * 1024
prefill = r["prompt_eval_count"] / (r["prompt_eval_duration"] / 1e9)
decode = r["eval_count"] / (r["eval_duration"] / 1e9)
print(json.dumps({"kv": kv, "rss": rss, "prompt_tokens": r["prompt_eval_count"], "prefill": prefill, "decode": decode}))
PY
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
done
# Upstream llama-server with the same cache types (-ctk/-ctv, flash attention on), same prompt.
if [ "${AIRLOCK_BENCH_NO_LLAMA_SERVER:-}" != 1 ]; then
  llama_server=$(bench/llama-server.sh)
  for kv in f16 q8_0 q4_0; do
    port=$(free_port)
    "$llama_server" -m "$model" -t "$threads" -c "$num_ctx" -np 1 -ngl 0 -fa on -ctk "$kv" -ctv "$kv" --port "$port" >"$tmp/llama-server-$kv.log" 2>&1 &
    server=$!
    wait_for "http://127.0.0.1:$port/health"
    python3 - "$port" "$kv" "$server" >>"$tmp/upstream" <<'PY'
import json, sys, urllib.request
port, kv, server = sys.argv[1], sys.argv[2], sys.argv[3]
prompt = " ".join(f"Line {i}: the pump in hall {i % 7} was checked and found in order." for i in range(80))
body = {"prompt": prompt, "n_predict": 64, "temperature": 0, "cache_prompt": False}
req = urllib.request.Request(f"http://127.0.0.1:{port}/completion", json.dumps(body).encode(), {"Content-Type": "application/json"})
t = json.load(urllib.request.urlopen(req, timeout=600))["timings"]
rss = 0
for line in open(f"/proc/{server}/status"):
    if line.startswith("VmRSS:"): rss = int(line.split()[1]) * 1024
print(json.dumps({"kv": kv, "rss": rss, "prefill": t["prompt_per_second"], "decode": t["predicted_per_second"]}))
PY
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
  done
fi
python3 - "$tmp/results" "$num_ctx" "$tmp/upstream" <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = rows[0]
print(f"KV cache types, test model, num_ctx {sys.argv[2]}, {base['prompt_tokens']}-token prompt, 64 tokens decoded (one run)")
print(f"{'cache':6} {'runner RSS':>12} {'ratio':>6} {'prefill tok/s':>14} {'ratio':>6} {'decode tok/s':>13} {'ratio':>6}")
for r in rows:
    print(f"{r['kv']:6} {r['rss']/2**20:10.0f} MiB {r['rss']/base['rss']:6.2f} {r['prefill']:14.1f} {r['prefill']/base['prefill']:6.2f} {r['decode']:13.1f} {r['decode']/base['decode']:6.2f}")
if os.path.exists(sys.argv[3]):
    up = {r["kv"]: r for r in map(json.loads, open(sys.argv[3]))}
    print("Against upstream llama-server (flash attention on, same cache type, prompt and threads)")
    print(f"{'cache':6} {'RSS ratio':>10} {'prefill airlock/llama-server':>29} {'decode airlock/llama-server':>28}")
    for r in rows:
        u = up[r["kv"]]
        print(f"{r['kv']:6} {r['rss']/u['rss']:10.2f} {r['prefill']/u['prefill']:29.2f} {r['decode']/u['decode']:28.2f}")
PY
