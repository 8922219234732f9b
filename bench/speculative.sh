#!/usr/bin/env bash
# Speculative decoding: `airlock serve` with Qwen2.5-Coder 1.5B Instruct alone and with its 0.5B
# sibling as the draft (`options.draft`), greedy, on a code prompt and a prose prompt: decode
# tokens/s as a ratio of the model alone in this one run, the draft acceptance rate, and whether
# the replies are identical (they must be); then the same against upstream llama-server
# (bench/llama-server.sh builds it; AIRLOCK_BENCH_NO_LLAMA_SERVER=1 skips it).
#   bench/speculative.sh [TARGET.gguf] [DRAFT.gguf] [THREADS] [DRAFT_MAX]
# Goal (issue 28): ≥ 1.3× the model alone on the code prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
target_model="${1:-$(tests/fixtures/fetch-test-model.sh instruct-1.5b)}"
draft_model="${2:-$(tests/fixtures/fetch-test-model.sh instruct)}"
threads="${3:-2}"
draft_max="${4:-8}"
source bench/serve-env.sh
"$bin" import "$target_model" --name coder:1.5b --link >/dev/null 2>&1
"$bin" import "$draft_model" --name coder:0.5b --link >/dev/null 2>&1
port=$(free_port)
AIRLOCK_HOST="127.0.0.1:$port" AIRLOCK_THREADS="$threads" AIRLOCK_NUM_PARALLEL=1 "$bin" serve >"$tmp/serve.log" 2>&1 &
server=$!
wait_for "http://127.0.0.1:$port/api/version"
python3 - "$port" "$draft_max" "$threads" "$tmp/ours" <<'PY'
import json, sys, urllib.request
port, draft_max, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
prompts = {
    "code": "Write a Python function `merge_sorted(a, b)` that merges two sorted lists into one sorted list, with a docstring and three doctest examples.",
    "prose": "Write a short paragraph about why lighthouses were important for ships in the nineteenth century.",
}
def chat(prompt, draft, model="coder:1.5b"):
    options = {"temperature": 0, "num_predict": 160, "num_ctx": 2048}
    if draft:
        options.update({"draft": "coder:0.5b", "draft_max": draft_max})
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": False, "options": options}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/chat", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=900))
rate = lambda r: r["eval_count"] / (r["eval_duration"] / 1e9)
# Load both runners first (the draft is part of the runner's key: two runners).
chat("Hi", False); chat("Hi", True)
print(f"Speculative decoding: Qwen2.5-Coder 1.5B Instruct, draft Qwen2.5-Coder 0.5B Instruct, greedy, {threads} threads, draft_max {draft_max} (one run)")
alone_rates = {}
print(f"{'prompt':6} {'alone tok/s':>12} {'drafted tok/s':>14} {'ratio':>6} {'acceptance':>11} {'tokens':>7} {'per check':>10} {'identical':>10}")
for name, prompt in prompts.items():
    alone, drafted = chat(prompt, False), chat(prompt, True)
    alone_rates[name] = rate(alone)
    same = alone["message"]["content"] == drafted["message"]["content"]
    # Tokens each check of the model yields: its own pick plus the drafted tokens it kept.
    per_check = drafted["eval_count"] / max(1, drafted["eval_count"] - drafted.get("draft_accepted_count", 0))
    print(f"{name:6} {rate(alone):12.1f} {rate(drafted):14.1f} {rate(drafted)/rate(alone):6.2f} {drafted.get('draft_acceptance_rate', 0)*100:10.0f}% {drafted['eval_count']:7} {per_check:10.2f} {str(same):>10}")
    with open(sys.argv[4], "a") as f:
        f.write(json.dumps({"prompt": name, "alone": rate(alone), "drafted": rate(drafted)}) + "\n")
# What a draft step costs next to a step of the model: a check of k tokens saves at most k - 1
# model steps and costs k - 1 draft steps and one model step on a batch of k.
draft_alone, model_alone = rate(chat(prompts["code"], False, "coder:0.5b")), alone_rates["code"]
print(f"a draft step costs {model_alone / draft_alone:.2f} of a model step (0.5B alone {draft_alone:.1f} tok/s, 1.5B alone {model_alone:.1f} tok/s, code prompt)")
PY
kill "$server"; wait "$server" 2>/dev/null || true; server=""

# Upstream llama-server with the same pair and settings (-md, --spec-draft-n-max, p-min 0.75), same prompts.
[ "${AIRLOCK_BENCH_NO_LLAMA_SERVER:-}" = 1 ] && exit 0
llama_server=$(bench/llama-server.sh)
for mode in alone drafted; do
  port=$(free_port)
  extra=(); [ "$mode" = drafted ] && extra=(-md "$draft_model" --spec-draft-n-max "$draft_max" --spec-draft-p-min 0.75 -ngld 0)
  "$llama_server" -m "$target_model" "${extra[@]}" -t "$threads" -c 2048 -np 1 --port "$port" -ngl 0 >"$tmp/llama-server-$mode.log" 2>&1 &
  server=$!
  wait_for "http://127.0.0.1:$port/health"
  python3 - "$port" "$mode" >>"$tmp/upstream" <<'PY'
import json, sys, urllib.request
port, mode = sys.argv[1], sys.argv[2]
prompts = {
    "code": "Write a Python function `merge_sorted(a, b)` that merges two sorted lists into one sorted list, with a docstring and three doctest examples.",
    "prose": "Write a short paragraph about why lighthouses were important for ships in the nineteenth century.",
}
def chat(prompt):
    body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 160}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=900))
chat("Hi")
for name, prompt in prompts.items():
    t = chat(prompt)["timings"]
    print(json.dumps({"prompt": name, "mode": mode, "rate": t["predicted_per_second"], "accepted": t.get("draft_n_accepted"), "drafted": t.get("draft_n")}))
PY
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
done
python3 - "$tmp/ours" "$tmp/upstream" <<'PY'
import json, sys
ours = {r["prompt"]: r for r in map(json.loads, open(sys.argv[1]))}
up = {(r["prompt"], r["mode"]): r for r in map(json.loads, open(sys.argv[2]))}
print("Against upstream llama-server (same models, threads, draft_max; greedy; one run)")
print(f"{'prompt':6} {'mode':8} {'llama-server tok/s':>19} {'airlock tok/s':>14} {'airlock/llama-server':>21} {'upstream acceptance':>20}")
for name in ours:
    for mode in ["alone", "drafted"]:
        u = up[(name, mode)]
        acc = f"{u['accepted']/u['drafted']*100:.0f}%" if u.get("drafted") else "-"
        print(f"{name:6} {mode:8} {u['rate']:19.1f} {ours[name][mode]:14.1f} {ours[name][mode]/u['rate']:21.2f} {acc:>20}")
PY
