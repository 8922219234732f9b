"""Images through the official clients against a real `airlock serve`: the test model imported
with the test projector (tests/fixtures/make-test-projector.py: llama.cpp's Gemma 3 projector
layout, tiny and untrained), so every image runs through llama.cpp's multimodal library."""
import base64
import os
import struct
import subprocess
import sys
import tempfile

import ollama
import openai
import pytest

from conftest import SERVER

VISION_MODEL = "gemma3-vision:latest"
HERE = os.path.dirname(os.path.abspath(__file__))
# 16 image tokens and the two that frame them.
IMAGE_TOKENS = 18


def bmp(w, h, pixel):
    """A 24-bit BMP of w×h pixels from pixel(x, y) -> (r, g, b)."""
    row = (w * 3 + 3) // 4 * 4
    rows = []
    for y in reversed(range(h)):
        line = b"".join(bytes((b, g, r)) for r, g, b in (pixel(x, y) for x in range(w)))
        rows.append(line + b"\0" * (row - len(line)))
    data = b"".join(rows)
    header = b"BM" + struct.pack("<IHHI", 54 + len(data), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    return header + info + data


GRADIENT = bmp(64, 48, lambda x, y: (255 - x * 4, y * 5, x * 4))
CHECKERBOARD = bmp(40, 40, lambda x, y: (255, 255, 255) if (x // 5 + y // 5) % 2 == 0 else (0, 0, 0))


@pytest.fixture(scope="module")
def vision_model(server):
    work = tempfile.mkdtemp(prefix="airlock-vision-")
    projector = os.path.join(work, "mmproj.gguf")
    subprocess.run([sys.executable, os.path.join(HERE, "..", "fixtures", "make-test-projector.py"), projector], check=True, capture_output=True)
    out = subprocess.run(
        [os.environ["AIRLOCK_BIN"], "import", os.environ["AIRLOCK_TEST_MODEL"], "--projector", projector, "--name", VISION_MODEL, "--link"],
        env=SERVER["env"], capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    return VISION_MODEL


def test_ollama_chat_with_images_sees_them(oc, vision_model, tmp_path):
    assert "vision" in oc.show(vision_model).capabilities
    opts = {"temperature": 0, "num_predict": 12}
    ask = "Describe the picture."
    plain = oc.chat(model=vision_model, messages=[{"role": "user", "content": ask}], options=opts)
    # The client takes raw bytes, a file path or base64 alike.
    path = tmp_path / "gradient.bmp"
    path.write_bytes(GRADIENT)
    from_path = oc.chat(model=vision_model, messages=[{"role": "user", "content": ask, "images": [str(path)]}], options=opts)
    from_bytes = oc.chat(model=vision_model, messages=[{"role": "user", "content": ask, "images": [GRADIENT]}], options=opts)
    other = oc.chat(model=vision_model, messages=[{"role": "user", "content": ask, "images": [CHECKERBOARD]}], options=opts)
    # Beside text an image may add one more token (the text on either side is tokenized apart);
    # a second image right beside the first adds exactly its own.
    assert plain.prompt_eval_count + IMAGE_TOKENS <= from_path.prompt_eval_count <= plain.prompt_eval_count + IMAGE_TOKENS + 1
    two = oc.chat(model=vision_model, messages=[{"role": "user", "content": ask, "images": [GRADIENT, CHECKERBOARD]}], options=opts)
    assert two.prompt_eval_count == from_path.prompt_eval_count + IMAGE_TOKENS
    assert from_path.message.content == from_bytes.message.content
    assert other.message.content != from_bytes.message.content
    streamed = list(oc.chat(model=vision_model, messages=[{"role": "user", "content": ask, "images": [GRADIENT]}], options=opts, stream=True))
    assert "".join(p.message.content or "" for p in streamed) == from_bytes.message.content
    g = oc.generate(model=vision_model, prompt="A picture of", images=[CHECKERBOARD], options={"temperature": 0, "num_predict": 4})
    assert g.done and g.prompt_eval_count > IMAGE_TOKENS


def test_openai_image_url_data_urls(ai, oc, vision_model):
    url = "data:image/bmp;base64," + base64.b64encode(GRADIENT).decode()
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Describe the picture."}]}]
    r = ai.chat.completions.create(model=vision_model, messages=messages, max_tokens=12, temperature=0)
    same = oc.chat(model=vision_model, messages=[{"role": "user", "content": "Describe the picture.", "images": [GRADIENT]}], options={"temperature": 0, "num_predict": 12})
    assert r.choices[0].message.content == same.message.content
    assert r.usage.prompt_tokens == same.prompt_eval_count
    with pytest.raises(openai.BadRequestError) as e:
        ai.chat.completions.create(model=vision_model, messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "data: URL" in str(e.value)


def test_ollama_create_from_an_uploaded_model_and_projector(oc, server, tmp_path):
    projector = tmp_path / "mmproj.gguf"
    subprocess.run([sys.executable, os.path.join(HERE, "..", "fixtures", "make-test-projector.py"), str(projector)], check=True, capture_output=True)
    files = {"mmproj.gguf": oc.create_blob(projector), "model.gguf": oc.create_blob(os.environ["AIRLOCK_TEST_MODEL"])}
    assert oc.create(model="compat-made-vision", files=files).status == "success"
    assert "vision" in oc.show("compat-made-vision").capabilities
    r = oc.chat(model="compat-made-vision", messages=[{"role": "user", "content": "Describe the picture.", "images": [CHECKERBOARD]}], options={"temperature": 0, "num_predict": 4})
    assert r.prompt_eval_count > IMAGE_TOKENS
    two_models = {"a.gguf": files["model.gguf"], "b.gguf": files["model.gguf"]}
    with pytest.raises(ollama.ResponseError) as e:
        oc.create(model="compat-two-models", files=two_models)
    assert e.value.status_code == 400 and "vision projector" in e.value.error
