"""Making models through the official `ollama` client: create_blob (POST /api/blobs) and create()."""
import hashlib
import os

import httpx
import ollama
import pytest

from conftest import MODEL

TEMPLATE = "{{ if .System }}{{ .System }}\n\n{{ end }}{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant:"


def test_create_from_a_model_with_layers(oc):
    progress = list(oc.create(model="compat-made", from_=MODEL, template=TEMPLATE, system="You are terse.",
                              parameters={"temperature": 0, "num_predict": 8, "stop": ["\n\n"]},
                              messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
                              license="Test licence", stream=True))
    assert progress[-1].status == "success"
    assert any(p.status.startswith("using existing layer sha256:") for p in progress)
    info = oc.show("compat-made")
    assert "SYSTEM You are terse." in info.modelfile
    assert info.template == TEMPLATE
    assert "num_predict" in info.parameters and '"\\n\\n"' in info.parameters
    assert info.license == "Test licence"
    assert "MESSAGE user Hi" in info.modelfile
    reply = oc.chat(model="compat-made", messages=[{"role": "user", "content": "How are you?"}])
    assert reply.done and reply.eval_count <= 8 and reply.prompt_eval_count > 0


def test_create_from_an_uploaded_gguf(oc, server):
    path = os.environ["AIRLOCK_TEST_MODEL"]
    digest = oc.create_blob(path)
    with open(path, "rb") as f:
        assert digest == "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    assert httpx.head(f"{server}/api/blobs/{digest}").status_code == 200
    done = oc.create(model="compat-uploaded", files={"model.gguf": digest}, system="Be brief.")
    assert done.status == "success"
    assert "SYSTEM Be brief." in oc.show("compat-uploaded").modelfile


def test_uploading_a_small_blob_and_a_wrong_digest(oc, server):
    data = b"not a model, just bytes"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert httpx.head(f"{server}/api/blobs/{digest}").status_code == 404
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    r = httpx.post(f"{server}/api/blobs/{wrong}", content=data)
    assert r.status_code == 400 and "digest mismatch" in r.json()["error"]
    assert httpx.head(f"{server}/api/blobs/{wrong}").status_code == 404
    assert httpx.head(f"{server}/api/blobs/{digest}").status_code == 404
    assert httpx.post(f"{server}/api/blobs/{digest}", content=data).status_code == 201
    assert httpx.head(f"{server}/api/blobs/{digest}").status_code == 200
    # Not a GGUF: create refuses it clearly.
    with pytest.raises(ollama.ResponseError) as e:
        oc.create(model="compat-bad", files={"model.gguf": digest})
    assert e.value.status_code == 400 and "GGUF" in str(e.value)


def test_create_refuses_quantize_and_bad_requests(oc):
    with pytest.raises(ollama.ResponseError) as e:
        oc.create(model="compat-q", from_=MODEL, quantize="q4_K_M")
    assert e.value.status_code == 400 and "not supported" in str(e.value)
    with pytest.raises(ollama.ResponseError) as e:
        oc.create(model="compat-t", from_=MODEL, template="{{ if .System }}never closed")
    assert e.value.status_code == 400 and "TEMPLATE" in str(e.value)
    with pytest.raises(ollama.ResponseError) as e:
        oc.create(model="compat-p", from_=MODEL, parameters={"temprature": 1})
    assert e.value.status_code == 400 and "unknown parameter" in str(e.value)
    with pytest.raises(ollama.ResponseError) as e:
        oc.create(model="compat-n", from_="no-such-model")
    assert e.value.status_code == 400
    names = [m.model for m in oc.list().models]
    assert not any(n.startswith(("compat-q", "compat-t", "compat-p", "compat-n")) for n in names)
