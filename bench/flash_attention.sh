#!/usr/bin/env bash
# Flash attention on vs off: `airlock serve` with AIRLOCK_FLASH_ATTENTION on and off, the test
# model, prompts of about 4k and 16k tokens: prefill and decode tokens/s (Ollama's own timings in
# the final chunk), on as a ratio of off, in this one run; then upstream llama-server with -fa on
# and off on the same prompts (bench/llama-server.sh builds it; AIRLOCK_BENCH_NO_LLAMA_SERVER=1
# skips it).
#   bench/flash_attention.sh [MODEL.gguf] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$(tests/fixtures/fetch-test-model.sh)}"
threads="${2:-2}"
num_ctx=20480
source bench/serve-env.sh
"$bin" import "$model" --name bench:latest --link >/dev/null 2>&1

# $1 server kind (airlock|llama-server), $2 fa (on|off), $3 port: one line of JSON per prompt.
measure() {
  wait_for "http://127.0.0.1:$3$([ "$1" = llama-server ] && echo /health || echo /api/version)"
  python3 - "$1" "$2" "$3" "$num_ctx" <<'PY'
import json, sys, urllib.request
kind, fa, port, num_ctx = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
url = f"http://127.0.0.1:{port}"
def post(path, body):
    return json.load(urllib.request.urlopen(urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}), timeout=1800))
line = lambda i: f"Line {i}: the pump in hall {i % 7} was checked on day {i % 31} and found in order."
for target in (4096, 16384):
    prompt = " ".join(line(i) for i in range(target // 24))
    if kind == "airlock":
        r = post("/api/generate", {"model": "bench:latest", "prompt": prompt, "stream": False, "options": {"num_ctx": num_ctx, "num_predict": 32, "temperature": 0}})
        n, prefill, decode = r["prompt_eval_count"], r["prompt_eval_count"] / (r["prompt_eval_duration"] / 1e9), r["eval_count"] / (r["eval_duration"] / 1e9)
    else:
        t = post("/completion", {"prompt": prompt, "n_predict": 32, "temperature": 0, "cache_prompt": False})["timings"]
        n, prefill, decode = t["prompt_n"], t["prompt_per_second"], t["predicted_per_second"]
    print(json.dumps({"kind": kind, "fa": fa, "target": target, "tokens": n, "prefill": prefill, "decode": decode}))
PY
}
for fa in on off; do
  port=$(free_port)
  AIRLOCK_HOST="127.0.0.1:$port" AIRLOCK_THREADS="$threads" AIRLOCK_NUM_PARALLEL=1 AIRLOCK_FLASH_ATTENTION=$fa "$bin" serve >"$tmp/serve-$fa.log" 2>&1 &
  server=$!
  measure airlock "$fa" "$port" >>"$tmp/results"
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
done
if [ "${AIRLOCK_BENCH_NO_LLAMA_SERVER:-}" != 1 ]; then
  llama_server=$(bench/llama-server.sh)
  for fa in on off; do
    port=$(free_port)
    "$llama_server" -m "$model" -t "$threads" -c "$num_ctx" -np 1 -fa "$fa" -ngl 0 --port "$port" >"$tmp/llama-server-$fa.log" 2>&1 &
    server=$!
    measure llama-server "$fa" "$port" >>"$tmp/results"
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
  done
fi
python3 - "$tmp/results" <<'PY'
import json, sys
rows = {(r["kind"], r["fa"], r["target"]): r for r in map(json.loads, open(sys.argv[1]))}
print("Flash attention, test model, 32 tokens decoded after each prompt (one run)")
print(f"{'server':12} {'prompt':>7} {'prefill on':>11} {'off':>8} {'on/off':>7} {'decode on':>10} {'off':>8} {'on/off':>7}")
for kind in ("airlock", "llama-server"):
    for target in (4096, 16384):
        on, off = rows.get((kind, "on", target)), rows.get((kind, "off", target))
        if on and off:
            print(f"{kind:12} {on['tokens']:7} {on['prefill']:11.1f} {off['prefill']:8.1f} {on['prefill']/off['prefill']:7.2f} {on['decode']:10.1f} {off['decode']:8.1f} {on['decode']/off['decode']:7.2f}")
for target in (4096, 16384):
    a, l = rows.get(("airlock", "on", target)), rows.get(("llama-server", "on", target))
    if a and l:
        print(f"airlock / llama-server, flash attention on, {a['tokens']}-token prompt: prefill {a['prefill']/l['prefill']:.2f}x, decode {a['decode']/l['decode']:.2f}x")
PY
