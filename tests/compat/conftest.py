"""Starts a real `airlock serve` on a free loopback port with the real test model imported."""
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import ollama
import openai
import pytest

MODEL = "gemma3:270m"
# The running server's store and environment, for tests that add models to it.
SERVER = {}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server():
    binary = os.environ["AIRLOCK_BIN"]
    model = os.environ["AIRLOCK_TEST_MODEL"]
    store = tempfile.mkdtemp(prefix="airlock-compat-")
    state = tempfile.mkdtemp(prefix="airlock-compat-state-")
    env = dict(os.environ, AIRLOCK_MODELS=store, AIRLOCK_THREADS="2", AIRLOCK_CONFIG=os.path.join(state, "config"), AIRLOCK_AUDIT_LOG=os.path.join(state, "audit.jsonl"))
    subprocess.run([binary, "import", model, "--name", MODEL, "--link"], env=env, check=True, capture_output=True)
    port = _free_port()
    env["AIRLOCK_HOST"] = f"127.0.0.1:{port}"
    proc = subprocess.Popen([binary, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    SERVER.update(store=store, env=env)
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/api/version", timeout=1)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("airlock serve did not start: " + proc.stderr.read())
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def oc(server):
    return ollama.Client(host=server)


@pytest.fixture
def ai(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused")
