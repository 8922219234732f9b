"""Tool calling, thinking and images through the official clients (and LangChain) against a real
`airlock serve` with the Gemma 3 270M base model (no template: Airlock's plain format, which
teaches tools in Hermes' `<tool_call>` syntax)."""
import hashlib
import json
import os
import subprocess

import ollama
import openai
import pytest

from conftest import MODEL, SERVER

THINK_MODEL = "gemma3-think:latest"


def get_current_weather(city: str, days: int) -> str:
    """Get the weather forecast for a city.

    Args:
        city: The city, e.g. Paris
        days: How many days ahead, 1 for tomorrow
    """
    return json.dumps({"city": city, "temperature": 22, "unit": "celsius"})


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the weather forecast for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city, e.g. Paris"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}


def assert_weather_call(name, args):
    assert name == "get_current_weather"
    assert isinstance(args["city"], str) and isinstance(args["days"], int)
    assert set(args) == {"city", "days"}


# --- OpenAI: tool_choice enforces a valid call through a grammar ---------------------------------

def openai_call(ai, **kw):
    return ai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What will the weather be in Paris tomorrow?"}], max_tokens=120, temperature=0, **kw
    )


def test_openai_required_tool_call(ai):
    r = openai_call(ai, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert_weather_call(call.function.name, json.loads(call.function.arguments))


def test_openai_required_tool_call_streamed_arrives_whole(ai):
    whole = openai_call(ai, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False).choices[0].message.tool_calls[0]
    chunks = list(openai_call(ai, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 1, deltas
    d = deltas[0]
    assert d.index == 0 and d.id.startswith("call_") and d.type == "function"
    assert (d.function.name, json.loads(d.function.arguments)) == (whole.function.name, json.loads(whole.function.arguments))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""


def test_openai_required_calls_cut_by_max_tokens_end_in_length_never_in_tag_text(ai):
    # Sampled, at token limits that cut the call's JSON, its closing tag, or a second call.
    for max_tokens, seed in [(12, 0), (28, 1), (28, 2), (40, 3), (64, 4), (64, 5)]:
        r = ai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "What will the weather be in Paris tomorrow?"}],
            tools=[WEATHER], tool_choice="required", max_tokens=max_tokens, temperature=1.0, seed=seed,
        )
        choice = r.choices[0]
        assert not choice.message.content, (max_tokens, seed, choice)
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls", choice
        else:
            assert choice.finish_reason == "length", choice


def test_openai_named_function_is_the_one_called(ai):
    r = openai_call(ai, tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}})
    calls = r.choices[0].message.tool_calls
    assert calls and all(c.function.name == "get_time" for c in calls)
    assert all(isinstance(json.loads(c.function.arguments)["zone"], str) for c in calls)


def test_openai_tool_choice_none_yields_text(ai):
    r = openai_call(ai, tools=[WEATHER], tool_choice="none")
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")


def test_openai_follow_up_with_the_tool_result(ai):
    msgs = [{"role": "user", "content": "What will the weather be in Paris tomorrow?"}]
    first = ai.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, max_tokens=120, temperature=0)
    call = first.choices[0].message.tool_calls[0]
    args = json.loads(call.function.arguments)
    msgs.append(first.choices[0].message.model_dump(exclude_none=True))
    msgs.append({"role": "tool", "tool_call_id": call.id, "content": get_current_weather(**args)})
    r = ai.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER], max_tokens=10, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    # The call and its result are part of the prompt now.
    assert r.usage.prompt_tokens > first.usage.prompt_tokens + 10


def test_openai_bad_tool_requests_are_400(ai):
    with pytest.raises(openai.BadRequestError) as e:
        openai_call(ai, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}})
    assert "nope" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        openai_call(ai, tools=[{"type": "function", "function": {"description": "no name"}}])
    with pytest.raises(openai.BadRequestError) as e:
        ai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}],
        )
    assert "arguments" in str(e.value)


# --- Ollama: the model decides; a conversation that shows it how, then the real thing -----------

def few_shot():
    """A finished tool round in the history, so the base model writes the next call itself."""
    return [
        {"role": "user", "content": "What will the weather be in Rome tomorrow?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_current_weather", "arguments": {"city": "Rome", "days": 1}}}]},
        {"role": "tool", "content": get_current_weather("Rome", 1), "tool_name": "get_current_weather"},
        {"role": "user", "content": "What will the weather be in Paris tomorrow?"},
    ]


OPTS = {"temperature": 0, "num_predict": 60}


def test_ollama_tool_call_with_typed_arguments_and_follow_up(oc):
    msgs = few_shot()
    r = oc.chat(model=MODEL, messages=msgs, tools=[get_current_weather], options=OPTS)
    assert r.message.tool_calls, r.message
    call = r.message.tool_calls[0]
    assert_weather_call(call.function.name, dict(call.function.arguments))
    assert "<tool_call>" not in (r.message.content or "")
    # The follow-up carries the call and the tool's answer.
    msgs.append(r.message)
    msgs.append({"role": "tool", "content": get_current_weather(**call.function.arguments), "tool_name": call.function.name})
    r2 = oc.chat(model=MODEL, messages=msgs, tools=[get_current_weather], options={"temperature": 0, "num_predict": 8})
    assert r2.done and r2.prompt_eval_count > r.prompt_eval_count + 10


def test_ollama_streamed_tool_call_arrives_in_one_chunk(oc):
    whole = oc.chat(model=MODEL, messages=few_shot(), tools=[WEATHER], options=OPTS)
    parts = list(oc.chat(model=MODEL, messages=few_shot(), tools=[WEATHER], options=OPTS, stream=True))
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert calls and whole.message.tool_calls
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [(c.function.name, dict(c.function.arguments)) for c in whole.message.tool_calls]
    assert parts[-1].done
    assert "".join(p.message.content or "" for p in parts) == (whole.message.content or "")


def test_ollama_show_lists_tools_capability(oc):
    assert "tools" in oc.show(MODEL).capabilities


# --- LangChain ----------------------------------------------------------------------------------

def test_langchain_chat_ollama_bind_tools_round_trip(server):
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_ollama import ChatOllama

    @tool
    def get_current_weather(city: str, days: int) -> str:
        """Get the weather forecast for a city.

        Args:
            city: The city, e.g. Paris
            days: How many days ahead, 1 for tomorrow
        """
        return json.dumps({"city": city, "temperature": 22, "unit": "celsius"})

    llm = ChatOllama(model=MODEL, base_url=server, temperature=0, num_predict=60).bind_tools([get_current_weather])
    history = [
        HumanMessage("What will the weather be in Rome tomorrow?"),
        AIMessage("", tool_calls=[{"name": "get_current_weather", "args": {"city": "Rome", "days": 1}, "id": "call_rome"}]),
        ToolMessage(get_current_weather.invoke({"city": "Rome", "days": 1}), tool_call_id="call_rome"),
        AIMessage("Tomorrow in Rome: 22 °C."),
        HumanMessage("What will the weather be in Paris tomorrow?"),
    ]
    ai_msg = llm.invoke(history)
    assert ai_msg.tool_calls, ai_msg
    call = ai_msg.tool_calls[0]
    assert_weather_call(call["name"], call["args"])
    history += [ai_msg, ToolMessage(get_current_weather.invoke(call["args"]), tool_call_id=call["id"])]
    final = llm.invoke(history)
    assert isinstance(final, AIMessage)


def test_openai_agents_sdk_tool_round_trip(server):
    """The OpenAI Agents SDK over Chat Completions: the agent's first turn must call the tool
    (tool_choice="required" is grammar-constrained), the SDK runs it and sends its result back, and
    the run ends with the model's answer after the tool result."""
    import asyncio

    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
    from agents.items import ToolCallItem, ToolCallOutputItem

    set_tracing_disabled(True)  # tracing would post to OpenAI's servers
    calls = []

    @function_tool
    def get_current_weather(city: str, days: int) -> str:
        """Get the weather forecast for a city.

        Args:
            city: The city, e.g. Paris
            days: How many days ahead, 1 for tomorrow
        """
        calls.append((city, days))
        return json.dumps({"city": city, "temperature": 22, "unit": "celsius"})

    client = openai.AsyncOpenAI(base_url=server + "/v1", api_key="unused")
    agent = Agent(
        name="forecaster",
        instructions="Answer questions about the weather with the get_current_weather tool.",
        model=OpenAIChatCompletionsModel(model=MODEL, openai_client=client),
        model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=60),
        tools=[get_current_weather],
    )
    # After a tool call the SDK resets tool_choice to auto, so the second turn may answer in text.
    result = asyncio.run(Runner.run(agent, "What will the weather be in Paris tomorrow?", max_turns=4))
    assert calls and all(isinstance(c, str) and isinstance(d, int) for c, d in calls), calls
    kinds = [type(item) for item in result.new_items]
    assert kinds[:2] == [ToolCallItem, ToolCallOutputItem], kinds
    assert isinstance(result.final_output, str)


# --- thinking -----------------------------------------------------------------------------------

# An Ollama template that opens <think> when asked to think (as thinking models' templates do).
THINK_TEMPLATE = (
    '{{- range .Messages }}{{ if eq .Role "user" }}User: {{ .Content }}\n'
    '{{ else if eq .Role "assistant" }}Assistant: {{ .Content }}\n{{ end }}{{ end }}'
    "Assistant:{{ if .Think }} <think>\n{{ end }}"
)


def _write_blob(store, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(store, "blobs", digest.replace(":", "-"))
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": digest, "size": len(data)}


@pytest.fixture(scope="module")
def think_model(server):
    """The test model's weights with THINK_TEMPLATE as its Ollama template layer, written into
    the server's store the way Ollama stores models."""
    store = SERVER["store"]
    base = os.path.join(store, "manifests", "registry.ollama.ai", "library", "gemma3", "270m")
    with open(base) as f:
        manifest = json.load(f)
    model_layer = next(layer for layer in manifest["layers"] if layer["mediaType"] == "application/vnd.ollama.image.model")
    template = dict(mediaType="application/vnd.ollama.image.template", **_write_blob(store, THINK_TEMPLATE.encode()))
    # Short replies by default, so `airlock run` (which has no length flag) ends soon.
    params = dict(mediaType="application/vnd.ollama.image.params", **_write_blob(store, b'{"num_predict": 16, "temperature": 0}'))
    config = dict(mediaType="application/vnd.docker.container.image.v1+json", **_write_blob(store, b'{"model_format":"gguf","model_family":"gemma3"}'))
    new = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": config, "layers": [model_layer, template, params]}
    folder = os.path.join(store, "manifests", "registry.ollama.ai", "library", "gemma3-think")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "latest"), "w") as f:
        json.dump(new, f)
    return THINK_MODEL


def test_ollama_think_separates_reasoning_from_the_answer(oc, think_model):
    msgs = [{"role": "user", "content": "What is 2 + 2?"}]
    r = oc.chat(model=think_model, messages=msgs, think=True, options={"temperature": 0, "num_predict": 24})
    assert r.message.thinking, r.message
    assert "<think>" not in (r.message.content or "") and "</think>" not in (r.message.content or "")
    parts = list(oc.chat(model=think_model, messages=msgs, think=True, options={"temperature": 0, "num_predict": 24}, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == r.message.thinking
    assert "".join(p.message.content or "" for p in parts) == (r.message.content or "")
    off = oc.chat(model=think_model, messages=msgs, think=False, options={"temperature": 0, "num_predict": 8})
    assert not off.message.thinking and off.message.content
    g = oc.generate(model=think_model, prompt="What is 2 + 2?", think=True, options={"temperature": 0, "num_predict": 16})
    assert g.thinking and "<think>" not in g.response
    assert "thinking" in oc.show(think_model).capabilities


def test_openai_reasoning_content_in_deltas(ai, think_model):
    kw = dict(model=think_model, messages=[{"role": "user", "content": "What is 2 + 2?"}], max_tokens=16, temperature=0, reasoning_effort="high")
    chunks = list(ai.chat.completions.create(stream=True, **kw))
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reasoning and "<think>" not in content
    whole = ai.chat.completions.create(**kw).choices[0].message
    assert whole.model_extra.get("reasoning_content") == reasoning


def test_think_on_a_model_without_thinking_is_400(oc):
    with pytest.raises(ollama.ResponseError) as e:
        oc.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], think=True)
    assert e.value.status_code == 400 and "does not support thinking" in e.value.error and "gemma3:270m" in e.value.error


def test_airlock_run_think_prints_thinking_apart(think_model):
    env = dict(SERVER["env"])
    out = subprocess.run([os.environ["AIRLOCK_BIN"], "run", think_model, "--think", "What is 2 + 2?"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # The prompt opened <think>: the reply is reasoning, printed apart and closed.
    assert out.stdout.startswith("Thinking...\n") and "\n...done thinking.\n\n" in out.stdout, out.stdout


# --- images -------------------------------------------------------------------------------------

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def test_images_to_a_model_without_projector_are_400_naming_it(oc, ai):
    with pytest.raises(ollama.ResponseError) as e:
        oc.chat(model=MODEL, messages=[{"role": "user", "content": "What is this?", "images": [PIXEL]}])
    assert e.value.status_code == 400 and "gemma3:270m" in e.value.error and "images" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        oc.generate(model=MODEL, prompt="What is this?", images=[PIXEL])
    assert e.value.status_code == 400 and "gemma3:270m" in e.value.error
    with pytest.raises(openai.BadRequestError) as e:
        ai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PIXEL}}]}],
        )
    assert "gemma3:270m" in str(e.value) and "images" in str(e.value)
