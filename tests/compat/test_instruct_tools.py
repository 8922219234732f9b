"""An instruct model that decides by itself to call a tool (Qwen2.5-Coder 0.5B Instruct,
tests/fixtures/fetch-test-model.sh instruct), through both official clients with tool_choice left
to the model. It answers with the bare call, no `<tool_call>` tags; that is a call, not text."""
import json
import os
import subprocess

import ollama
import openai
import pytest

from conftest import SERVER

INSTRUCT = "qwen2.5-coder:0.5b"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}, "required": ["city"]},
    },
}
QUESTION = "What is the weather in Paris?"


@pytest.fixture(scope="module")
def instruct(server):
    out = subprocess.run(
        [os.environ["AIRLOCK_BIN"], "import", os.environ["AIRLOCK_INSTRUCT_MODEL"], "--name", INSTRUCT, "--link"],
        env=SERVER["env"], capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    yield INSTRUCT
    ollama.Client(host=server).delete(INSTRUCT)


def test_ollama_client_gets_the_untagged_call_as_a_call(server, instruct):
    r = ollama.Client(host=server).chat(model=instruct, messages=[{"role": "user", "content": QUESTION}], tools=[WEATHER], options={"temperature": 0})
    calls = r.message.tool_calls or []
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})], r.message
    assert not (r.message.content or "").strip(), r.message.content


def test_openai_client_gets_the_untagged_call_as_a_call_streamed_too(server, instruct):
    ai = openai.OpenAI(base_url=server + "/v1", api_key="unused")
    r = ai.chat.completions.create(model=instruct, messages=[{"role": "user", "content": QUESTION}], tools=[WEATHER], temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert not choice.message.content
    chunks = list(ai.chat.completions.create(model=instruct, messages=[{"role": "user", "content": QUESTION}], tools=[WEATHER], temperature=0, stream=True))
    streamed = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.function.name, json.loads(tc.function.arguments)) for tc in streamed] == [("get_weather", {"city": "Paris"})]
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_question_without_a_tool_to_call_stays_text(server, instruct):
    r = ollama.Client(host=server).chat(model=instruct, messages=[{"role": "user", "content": "Write a haiku about the sea."}], tools=[WEATHER], options={"temperature": 0, "num_predict": 48})
    assert not r.message.tool_calls, r.message
    assert r.message.content.strip()
