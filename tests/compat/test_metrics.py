"""`/metrics` read with the Prometheus project's own Python parser: the counters move by exactly
the traffic sent."""
import json
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import MODEL


def scrape(server):
    text = urllib.request.urlopen(server + "/metrics", timeout=30).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_by_exactly_the_traffic_sent(server, oc, ai):
    oc.generate(model=MODEL, prompt="Warm up", options={"num_predict": 1})
    before = scrape(server)
    prompt_tokens = reply_tokens = 0
    # Time to first token is observed for replies with text; a sampled reply may end at once.
    replies_with_text = 0
    for i in range(2):
        r = oc.chat(model=MODEL, messages=[{"role": "user", "content": f"Say {i}"}], options={"num_predict": 4})
        prompt_tokens += r.prompt_eval_count
        reply_tokens += r.eval_count
        replies_with_text += bool(r.message.content)
    streamed = list(oc.generate(model=MODEL, prompt="Count", stream=True, options={"num_predict": 3}))
    prompt_tokens += streamed[-1].prompt_eval_count
    reply_tokens += streamed[-1].eval_count
    replies_with_text += bool("".join(s.response for s in streamed))
    c = ai.completions.create(model=MODEL, prompt="Hello", max_tokens=3)
    prompt_tokens += c.usage.prompt_tokens
    reply_tokens += c.usage.completion_tokens
    replies_with_text += bool(c.choices[0].text)
    assert replies_with_text >= 1
    with pytest.raises(Exception):
        oc.chat(model="missing:1", messages=[{"role": "user", "content": "x"}])
    expected = {
        ("airlock_requests_total", (("route", "/api/chat"), ("status", "200"))): 2,
        ("airlock_requests_total", (("route", "/api/generate"), ("status", "200"))): 1,
        ("airlock_requests_total", (("route", "/v1/completions"), ("status", "200"))): 1,
        ("airlock_requests_total", (("route", "/api/chat"), ("status", "404"))): 1,
    }
    # A request is counted once its response has been sent: the last one may land a moment later.
    deadline = time.time() + 10
    while True:
        after = scrape(server)
        moves = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in expected}
        if moves == expected or time.time() > deadline:
            break
        time.sleep(0.1)
    assert moves == expected

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("airlock_prompt_tokens_total", model=MODEL) == prompt_tokens
    assert moved("airlock_reply_tokens_total", model=MODEL) == reply_tokens
    assert moved("airlock_time_to_first_token_seconds_count", model=MODEL) == replies_with_text
    assert moved("airlock_decode_tokens_per_second_count", model=MODEL) == 4
    assert value(after, "airlock_loaded_model_bytes", model=MODEL, device="CPU") > 0
    assert value(after, "airlock_runner_starts_total") >= 1
    assert value(after, "airlock_requests_waiting") == 0
    print(json.dumps({k[0] + str(dict(k[1])): v for k, v in after.items() if v and "bucket" not in k[0]}, indent=1))
