#!/usr/bin/env bash
# The prompt cache across restarts: `airlock serve` is started, the model loaded, and the first
# turn's time to first token measured (streamed, from the request to the first text) with a
# ~1,000-token system prompt: cold (no saved prefix), after a restart with the prefix saved by
# the run before, and after a restart with the prompt cache off; plus a second turn in the same
# runner for reference; then upstream llama-server with its slot saved by hand and restored
# (bench/llama-server.sh builds it; AIRLOCK_BENCH_NO_LLAMA_SERVER=1 skips it). Ratios of
# Airlock's cold first turn, in this one run.
#   bench/prompt_cache.sh [MODEL.gguf] [THREADS]
# Goal (issue 28): first turn after a restart ≤ 0.2× a cold first turn.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$(tests/fixtures/fetch-test-model.sh)}"
threads="${2:-2}"
source bench/serve-env.sh
"$bin" import "$model" --name bench:latest --link >/dev/null 2>&1

# One server run: load the model, then time the first turn(s). $1: label, $2: AIRLOCK_PROMPT_CACHE, $3: turns.
run() {
  port=$(free_port)
  AIRLOCK_HOST="127.0.0.1:$port" AIRLOCK_THREADS="$threads" AIRLOCK_NUM_PARALLEL=1 AIRLOCK_PROMPT_CACHE="$2" "$bin" serve >"$tmp/serve-$1.log" 2>&1 &
  server=$!
  wait_for "http://127.0.0.1:$port/api/version"
  python3 - "$port" "$1" "$3" >>"$tmp/results" <<'PY'
import json, sys, time, urllib.request
port, label, turns = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = f"http://127.0.0.1:{port}"
def post(path, body):
    return urllib.request.urlopen(urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}), timeout=600)
post("/api/generate", {"model": "bench:latest"}).read()  # load the model first: TTFT excludes loading
rules = "\n".join(f"Rule {i}: berth {i} takes ships of at most {80 + i * 5} metres, opens at {5 + i % 4}:00 and closes at {16 + i % 6}:00; pilots are booked a day ahead." for i in range(1, 41))
system = "You are the assistant of the harbour office. Answer from these rules only.\n" + rules
questions = ["Which berth takes a ship of 150 metres?", "When does berth 12 close?"]
for turn in range(turns):
    body = {"model": "bench:latest", "stream": True, "messages": [{"role": "system", "content": system}, {"role": "user", "content": questions[turn]}],
            "options": {"temperature": 0, "num_predict": 8, "num_ctx": 4096}}
    start = time.perf_counter(); first = None
    for line in post("/api/chat", body):
        chunk = json.loads(line)
        if first is None and chunk.get("message", {}).get("content"):
            first = time.perf_counter() - start
        if chunk.get("done"):
            final = chunk
    name = label if turn == 0 else "second turn, same runner"
    print(json.dumps({"run": name, "ttft": first, "prompt_tokens": final["prompt_eval_count"]}))
PY
  # The runner saves a new prefix once idle: let it finish before stopping the server.
  for _ in $(seq 600); do [ "$2" = off ] || ls "$2"/*.sha256 >/dev/null 2>&1 && break; sleep 0.1; done
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
}
cache="$tmp/prompt-cache"
run "cold first turn (nothing saved)" "$cache" 2
run "first turn after a restart, prefix saved" "$cache" 1
run "first turn after a restart, cache off" off 1

# Upstream llama-server keeps a slot across restarts by hand: --slot-save-path, then
# POST /slots/0?action=save before stopping and ?action=restore after starting.
if [ "${AIRLOCK_BENCH_NO_LLAMA_SERVER:-}" != 1 ]; then
  llama_server=$(bench/llama-server.sh)
  mkdir -p "$tmp/slots"
  for phase in cold restored; do
    port=$(free_port)
    "$llama_server" -m "$model" -t "$threads" -c 4096 -np 1 -ngl 0 --slot-save-path "$tmp/slots" --port "$port" >"$tmp/llama-server-$phase.log" 2>&1 &
    server=$!
    wait_for "http://127.0.0.1:$port/health"
    python3 - "$port" "$phase" >>"$tmp/results" <<'PY'
import json, sys, time, urllib.request
port, phase = sys.argv[1], sys.argv[2]
url = f"http://127.0.0.1:{port}"
def post(path, body):
    return urllib.request.urlopen(urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}), timeout=600)
rules = "\n".join(f"Rule {i}: berth {i} takes ships of at most {80 + i * 5} metres, opens at {5 + i % 4}:00 and closes at {16 + i % 6}:00; pilots are booked a day ahead." for i in range(1, 41))
system = "You are the assistant of the harbour office. Answer from these rules only.\n" + rules
if phase == "restored":
    post("/slots/0?action=restore", {"filename": "harbour.bin"}).read()
body = {"stream": True, "temperature": 0, "max_tokens": 8, "messages": [{"role": "system", "content": system}, {"role": "user", "content": "Which berth takes a ship of 150 metres?"}]}
start = time.perf_counter(); first = None
for line in post("/v1/chat/completions", body):
    line = line.decode().strip()
    if first is None and line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
        first = time.perf_counter() - start
if phase == "cold":
    post("/slots/0?action=save", {"filename": "harbour.bin"}).read()
name = "llama-server: cold first turn" if phase == "cold" else "llama-server: after a restart, slot restored"
print(json.dumps({"run": name, "ttft": first}))
PY
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
  done
fi
python3 - "$tmp/results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = rows[0]["ttft"]
print(f"Prompt cache, test model, {rows[0]['prompt_tokens']}-token prompt (system prompt and question), time to first token (one run)")
print(f"{'first turn':48} {'TTFT ms':>8} {'ratio':>6}")
for r in rows:
    print(f"{r['run']:48} {r['ttft']*1000:8.0f} {r['ttft']/base:6.2f}")
PY
