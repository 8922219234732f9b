#!/usr/bin/env python3
"""Regenerates expected/*.txt with Python jinja2 set up exactly like Hugging Face transformers'
apply_chat_template (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
json.dumps-based tojson, raise_exception, strftime_now), plus the globals airlock adds
(tools=None, date_string). Run from this folder: python3 gen_expected.py
"""
import json
import os
from datetime import datetime, timezone

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The fixed clock the Rust tests use: 2025-01-15 12:00:00 UTC.
NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=timezone.utc)

CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello, how are you?"},
    {"role": "assistant", "content": "I'm doing great. How can I help you today?"},
    {"role": "user", "content": "I'd like to show off how chat templating works!"},
]

# template file, expected file, bos, eos, messages
CASES = [
    ("llama3-instruct.jinja", "llama3-instruct.txt", "<|begin_of_text|>", "<|eot_id|>", CONVERSATION),
    ("llama3.1-instruct.jinja", "llama3.1-instruct.txt", "<|begin_of_text|>", "<|eot_id|>", CONVERSATION),
    ("gemma3-it.jinja", "gemma3-it.txt", "<bos>", "<eos>", CONVERSATION),
    ("gemma2-it.jinja", "gemma2-it-no-system.txt", "<bos>", "<eos>", CONVERSATION[1:]),
    ("qwen2.5-instruct.jinja", "qwen2.5-instruct.txt", "", "<|im_end|>", CONVERSATION),
    ("mistral-nemo-instruct-2407.jinja", "mistral-nemo-instruct-2407.txt", "<s>", "</s>", CONVERSATION),
    ("phi3-mini-4k-instruct.jinja", "phi3-mini-4k-instruct.txt", "<s>", "<|endoftext|>", CONVERSATION),
]


# Tool calling, as Hugging Face documents it: `tools` as JSON schemas, the assistant's call with
# `arguments` as a dict, the tool's answer with `tool_call_id` and `name` (Mistral wants 9-character ids).
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
]

TOOL_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "get_current_weather", "arguments": {"city": "Paris", "unit": "celsius"}}, "id": "call0001A"}
        ],
    },
    {"role": "tool", "content": "{\"temperature\": 22, \"unit\": \"celsius\"}", "tool_call_id": "call0001A", "name": "get_current_weather"},
]

# template file, expected file, bos, eos, messages, extra template arguments
TOOL_CASES = [
    ("qwen2.5-instruct.jinja", "qwen2.5-instruct-tools.txt", "", "<|im_end|>", TOOL_CONVERSATION, {"tools": TOOLS}),
    ("llama3.1-instruct.jinja", "llama3.1-instruct-tools.txt", "<|begin_of_text|>", "<|eot_id|>", TOOL_CONVERSATION, {"tools": TOOLS}),
    ("mistral-nemo-instruct-2407.jinja", "mistral-nemo-instruct-2407-tools.txt", "<s>", "</s>", TOOL_CONVERSATION[1:], {"tools": TOOLS}),
    ("thinking-qwen3-style.jinja", "thinking-qwen3-style-tools.txt", "", "<|im_end|>", TOOL_CONVERSATION, {"tools": TOOLS}),
    ("thinking-qwen3-style.jinja", "thinking-qwen3-style-think-off.txt", "", "<|im_end|>", CONVERSATION, {"enable_thinking": False}),
    (
        "thinking-qwen3-style.jinja",
        "thinking-qwen3-style-history.txt",
        "",
        "<|im_end|>",
        CONVERSATION[:3] + [{"role": "assistant", "content": "Sure.", "reasoning_content": "They want a demo."}],
        {"enable_thinking": True},
    ),
    ("thinking-forced-open.jinja", "thinking-forced-open.txt", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", CONVERSATION, {}),
]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return NOW.strftime(fmt)


def render(source, bos, eos, messages, **extra):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    args = dict(
        messages=messages,
        tools=None,
        add_generation_prompt=True,
        bos_token=bos,
        eos_token=eos,
        date_string=NOW.strftime("%d %b %Y"),
    )
    args.update(extra)
    return env.from_string(source).render(**args)


def main():
    os.makedirs("expected", exist_ok=True)
    for template, expected, bos, eos, messages in CASES:
        with open(template, encoding="utf-8") as f:
            source = f.read()
        with open(os.path.join("expected", expected), "w", encoding="utf-8", newline="") as f:
            f.write(render(source, bos, eos, messages))
    for template, expected, bos, eos, messages, extra in TOOL_CASES:
        with open(template, encoding="utf-8") as f:
            source = f.read()
        with open(os.path.join("expected", expected), "w", encoding="utf-8", newline="") as f:
            f.write(render(source, bos, eos, messages, **extra))


if __name__ == "__main__":
    main()
