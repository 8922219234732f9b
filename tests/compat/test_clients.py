"""The official `ollama` and `openai` Python clients against a real `airlock serve`."""
import math

import ollama
import openai
import pytest

from conftest import MODEL

SHORT = {"num_predict": 8, "temperature": 0}


def test_ollama_list_and_show(oc):
    names = [m.model for m in oc.list().models]
    assert MODEL in names
    info = oc.show(MODEL)
    assert info.details.family == "gemma3"
    assert info.details.quantization_level == "Q4_K_M"
    assert isinstance(info.modelinfo, dict) and info.modelinfo["general.architecture"] == "gemma3"
    assert "completion" in info.capabilities


def test_ollama_generate_streamed_and_not(oc):
    full = oc.generate(model=MODEL, prompt="The capital of France is", options=SHORT)
    assert full.done and full.response and full.eval_count <= 8
    assert full.total_duration > 0 and full.prompt_eval_count > 0
    parts = list(oc.generate(model=MODEL, prompt="The capital of France is", options=SHORT, stream=True))
    assert parts[-1].done and parts[-1].done_reason in ("stop", "length")
    assert "".join(p.response for p in parts) == full.response  # greedy: same text either way


def test_ollama_generate_raw(oc):
    r = oc.generate(model=MODEL, prompt="1, 2, 3, 4,", raw=True, options=SHORT)
    assert r.done and r.response


def test_ollama_chat_streamed_and_not(oc):
    msgs = [{"role": "user", "content": "Name a colour."}]
    r = oc.chat(model=MODEL, messages=msgs, options=SHORT)
    assert r.message.role == "assistant" and r.message.content and r.done
    parts = list(oc.chat(model=MODEL, messages=msgs, options=SHORT, stream=True))
    assert parts[-1].done
    assert "".join(p.message.content for p in parts) == r.message.content


def _norm(v):
    return math.sqrt(sum(x * x for x in v))


def _cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / (_norm(a) * _norm(b))


def test_ollama_embed_batch_and_legacy_embeddings(oc):
    texts = ["The capital of France is Paris.", "Invoice 4471 is due in March.", "hello"]
    r = oc.embed(model=MODEL, input=texts)
    assert len(r.embeddings) == 3 and all(len(v) == 640 for v in r.embeddings)
    assert all(abs(_norm(v) - 1) < 1e-4 for v in r.embeddings)
    assert r.prompt_eval_count > 0 and r.total_duration > 0
    one = oc.embed(model=MODEL, input=texts[1], dimensions=32)
    assert len(one.embeddings[0]) == 32 and abs(_norm(one.embeddings[0]) - 1) < 1e-4
    legacy = oc.embeddings(model=MODEL, prompt=texts[0])
    assert len(legacy.embedding) == 640 and _cosine(legacy.embedding, r.embeddings[0]) > 0.9999
    with pytest.raises(ollama.ResponseError) as e:
        oc.embed(model=MODEL, input="word " * 600, truncate=False, options={"num_ctx": 256})
    assert e.value.status_code == 400 and "context" in e.value.error


def test_openai_embeddings_float_base64_and_tokens(ai, oc):
    texts = ["The capital of France is Paris.", "hello"]
    expected = oc.embed(model=MODEL, input=texts).embeddings
    # The client asks for base64 by default and decodes it.
    r = ai.embeddings.create(model=MODEL, input=texts)
    assert [d.index for d in r.data] == [0, 1]
    assert all(_cosine(d.embedding, e) > 0.9999 for d, e in zip(r.data, expected))
    assert r.usage.prompt_tokens == r.usage.total_tokens > 0
    f = ai.embeddings.create(model=MODEL, input=texts[0], encoding_format="float", dimensions=16)
    assert len(f.data[0].embedding) == 16
    t = ai.embeddings.create(model=MODEL, input=[[2, 818, 5279]])
    assert len(t.data[0].embedding) == 640 and t.usage.prompt_tokens == 3


def test_ollama_unknown_model_is_404(oc):
    with pytest.raises(ollama.ResponseError) as e:
        oc.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as e:
        oc.show("no-such-model")
    assert e.value.status_code == 404


def test_ollama_wrong_option_type_is_400(oc):
    with pytest.raises(ollama.ResponseError) as e:
        oc.generate(model=MODEL, prompt="hi", options={"temperature": "hot"})
    assert e.value.status_code == 400


def test_ollama_ps_and_copy_delete(oc):
    oc.generate(model=MODEL, prompt="hi", options=SHORT)
    assert MODEL in [m.model for m in oc.ps().models]
    oc.copy(MODEL, "copy-of-gemma:latest")
    assert "copy-of-gemma:latest" in [m.model for m in oc.list().models]
    oc.delete("copy-of-gemma:latest")
    assert "copy-of-gemma:latest" not in [m.model for m in oc.list().models]
    assert MODEL in [m.model for m in oc.list().models]


def test_openai_models(ai):
    assert MODEL in [m.id for m in ai.models.list().data]


def test_openai_chat_and_streaming_with_usage(ai):
    msgs = [{"role": "user", "content": "Say hi."}]
    r = ai.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6, temperature=0)
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 6 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    chunks = list(ai.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6, temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_openai_completions(ai):
    r = ai.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=6, temperature=0)
    assert r.choices[0].text and r.usage.completion_tokens <= 6
    streamed = "".join(c.choices[0].text for c in ai.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=6, temperature=0, stream=True) if c.choices)
    assert streamed == r.choices[0].text


def test_openai_unknown_model_error_object(ai):
    with pytest.raises(openai.NotFoundError) as e:
        ai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found"
