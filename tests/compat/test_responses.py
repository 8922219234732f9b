"""OpenAI's Responses API through the official `openai` client against a real `airlock serve`:
text, streaming with its typed events, a tool round trip with the instruct model (which decides by
itself to call the tool), structured output, reasoning, and follow-ups by previous_response_id."""
import json

import openai
import pytest

from conftest import MODEL
from test_instruct_tools import instruct  # noqa: F401 (the fixture)
from test_tools import think_model  # noqa: F401 (the fixture)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}, "required": ["city"]},
}


def test_text_with_instructions_and_usage(ai):
    r = ai.responses.create(model=MODEL, instructions="You are terse.", input="Why is the sky blue?", max_output_tokens=16, temperature=0)
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.output_text.strip() and r.output[0].type == "message"
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 16
    capped = ai.responses.create(model=MODEL, input="Count to one hundred.", max_output_tokens=3, temperature=0)
    assert (capped.status, capped.incomplete_details.reason, capped.usage.output_tokens) == ("incomplete", "max_output_tokens", 3)


def test_streaming_sends_typed_events_and_the_same_text(ai):
    whole = ai.responses.create(model=MODEL, input="Say hello.", max_output_tokens=12, temperature=0)
    events = list(ai.responses.create(model=MODEL, input="Say hello.", max_output_tokens=12, temperature=0, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] in ("response.completed", "response.incomplete") and "response.output_text.delta" in kinds, kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text
    assert events[-1].response.output_text == whole.output_text
    with ai.responses.stream(model=MODEL, input="Say hello.", max_output_tokens=12, temperature=0) as s:
        assert s.get_final_response().output_text == whole.output_text


def test_tool_round_trip_with_a_model_that_calls_by_itself(ai, instruct):  # noqa: F811
    r = ai.responses.create(model=instruct, input="What is the weather in Paris?", tools=[WEATHER], temperature=0)
    calls = [o for o in r.output if o.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})], r.output
    follow = ai.responses.create(
        model=instruct, previous_response_id=r.id, tools=[WEATHER], temperature=0, max_output_tokens=16,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 22 degrees Celsius"}],
    )
    # The result went in after the kept conversation: the prompt grew by it.
    assert follow.usage.input_tokens > r.usage.input_tokens + 5 and follow.status in ("completed", "incomplete")
    streamed = list(ai.responses.create(model=instruct, input="What is the weather in Paris?", tools=[WEATHER], temperature=0, stream=True))
    args = [e for e in streamed if e.type == "response.function_call_arguments.done"]
    assert [json.loads(a.arguments) for a in args] == [{"city": "Paris"}]
    done = streamed[-1].response
    assert [o.type for o in done.output] == ["function_call"] and done.output[0].name == "get_weather"


def test_structured_output_follows_the_schema(ai):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}}, "required": ["city", "sunny"], "additionalProperties": False}
    r = ai.responses.create(model=MODEL, input="Describe the weather in Rome as JSON.", max_output_tokens=48, temperature=0,
                            text={"format": {"type": "json_schema", "name": "weather", "schema": schema, "strict": True}})
    v = json.loads(r.output_text)
    assert set(v) == {"city", "sunny"} and isinstance(v["sunny"], bool)


def test_previous_response_id_continues_the_conversation_and_store_false_keeps_nothing(ai):
    first = ai.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=8, temperature=0)
    second = ai.responses.create(model=MODEL, previous_response_id=first.id, input="What is my name?", max_output_tokens=8, temperature=0)
    alone = ai.responses.create(model=MODEL, input="What is my name?", max_output_tokens=8, temperature=0)
    assert second.usage.input_tokens > alone.usage.input_tokens + 5
    unstored = ai.responses.create(model=MODEL, input="Remember nothing.", max_output_tokens=4, temperature=0, store=False)
    with pytest.raises(openai.BadRequestError) as e:
        ai.responses.create(model=MODEL, previous_response_id=unstored.id, input="And now?", max_output_tokens=4)
    assert "previous_response_id" in str(e.value)


def test_reasoning_effort_returns_a_reasoning_item(ai, think_model):  # noqa: F811
    r = ai.responses.create(model=think_model, input="What is 2+2?", reasoning={"effort": "low"}, max_output_tokens=64, temperature=0)
    assert r.output[0].type == "reasoning" and r.output[0].summary[0].text.strip(), r.output
