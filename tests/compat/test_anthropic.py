"""Anthropic's Messages API through the official `anthropic` SDK against a real `airlock serve`:
text, streaming with its event sequence, a tool round trip with the instruct model (which decides
by itself to call the tool), thinking, token counting, and errors in Anthropic's shape."""
import json
import urllib.request

import anthropic
import pytest

from conftest import MODEL, SERVER
from test_instruct_tools import INSTRUCT, instruct  # noqa: F401 (the fixture)
from test_tools import think_model  # noqa: F401 (the fixture)

# The SDK no longer sends sampling settings; the server still reads them, and greedy replies
# make the assertions below repeatable.
GREEDY = {"temperature": 0}
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}, "required": ["city"]},
}


@pytest.fixture
def ac(server):
    return anthropic.Anthropic(base_url=server, api_key="unused")


def test_text_reply_with_usage_and_stop_reason(ac):
    r = ac.messages.create(model=MODEL, max_tokens=16, system="You are terse.", messages=[{"role": "user", "content": "Why is the sky blue?"}], extra_body=GREEDY)
    assert r.type == "message" and r.role == "assistant" and r.id.startswith("msg_")
    assert r.content[0].type == "text" and r.content[0].text.strip()
    assert r.stop_reason in ("end_turn", "max_tokens")
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 16
    capped = ac.messages.create(model=MODEL, max_tokens=3, messages=[{"role": "user", "content": "Count to one hundred."}], extra_body=GREEDY)
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 3


def test_streaming_events_come_in_anthropics_order(ac):
    with ac.messages.stream(model=MODEL, max_tokens=12, messages=[{"role": "user", "content": "Say hello."}], extra_body=GREEDY) as s:
        kinds = [e.type for e in s]
        final = s.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    assert kinds[1] == "content_block_start" and "content_block_stop" in kinds and kinds[-2] == "message_delta", kinds
    whole = ac.messages.create(model=MODEL, max_tokens=12, messages=[{"role": "user", "content": "Say hello."}], extra_body=GREEDY)
    assert final.content[0].text == whole.content[0].text
    assert final.usage.output_tokens == whole.usage.output_tokens and final.usage.input_tokens == whole.usage.input_tokens


def test_tool_round_trip_with_a_model_that_calls_by_itself(ac, server, instruct):  # noqa: F811
    question = {"role": "user", "content": "What is the weather in Paris?"}
    r = ac.messages.create(model=instruct, max_tokens=128, messages=[question], tools=[WEATHER], extra_body=GREEDY)
    assert r.stop_reason == "tool_use", r
    use = [b for b in r.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in use] == [("get_weather", {"city": "Paris"})]
    result = "Sunny, 22 degrees Celsius"
    follow = ac.messages.create(
        model=instruct, max_tokens=16, tools=[WEATHER], extra_body=GREEDY,
        messages=[question, {"role": "assistant", "content": r.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use[0].id, "content": result}]}],
    )
    # The result reached the model as Ollama's `tool` turn: the same prompt, token for token, as
    # the ollama client's round trip. (What this 0.5B model makes of it is its own affair.)
    body = {
        "model": instruct, "stream": False, "options": {"temperature": 0, "num_predict": 16},
        "tools": [{"type": "function", "function": {"name": WEATHER["name"], "description": WEATHER["description"], "parameters": WEATHER["input_schema"]}}],
        "messages": [question, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                     {"role": "tool", "content": result, "tool_name": "get_weather"}],
    }
    request = urllib.request.Request(server + "/api/chat", json.dumps(body).encode(), {"Content-Type": "application/json"})
    same = json.load(urllib.request.urlopen(request))
    assert follow.usage.input_tokens == same["prompt_eval_count"] > r.usage.input_tokens, (follow.usage, same)
    assert follow.stop_reason in ("end_turn", "max_tokens", "tool_use")
    # Streamed, the call arrives as one tool_use block with its input as JSON.
    with ac.messages.stream(model=instruct, max_tokens=128, messages=[question], tools=[WEATHER], extra_body=GREEDY) as s:
        final = s.get_final_message()
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == [("get_weather", {"city": "Paris"})]
    assert final.stop_reason == "tool_use"


def test_forced_tool_choice(ac):
    r = ac.messages.create(model=MODEL, max_tokens=96, messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}, extra_body=GREEDY)
    use = [b for b in r.content if b.type == "tool_use"]
    assert use and use[0].name == "get_weather" and isinstance(use[0].input["city"], str), r


def test_thinking_comes_back_as_thinking_blocks(ac, think_model):  # noqa: F811
    r = ac.messages.create(model=think_model, max_tokens=64, thinking={"type": "enabled", "budget_tokens": 1024}, messages=[{"role": "user", "content": "What is 2+2?"}], extra_body=GREEDY)
    kinds = [b.type for b in r.content]
    assert kinds[0] == "thinking" and r.content[0].thinking.strip(), r
    with ac.messages.stream(model=think_model, max_tokens=64, thinking={"type": "enabled", "budget_tokens": 1024}, messages=[{"role": "user", "content": "What is 2+2?"}], extra_body=GREEDY) as s:
        final = s.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].thinking == r.content[0].thinking


def test_count_tokens_matches_what_the_reply_reports(ac):
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    counted = ac.messages.count_tokens(model=MODEL, system="You are terse.", messages=messages)
    r = ac.messages.create(model=MODEL, max_tokens=1, system="You are terse.", messages=messages)
    assert counted.input_tokens == r.usage.input_tokens > 0


def test_errors_come_in_anthropics_shape(ac, server):
    with pytest.raises(anthropic.NotFoundError) as e:
        ac.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        ac.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}])
    assert "base64" in e.value.body["error"]["message"]
