"""`/api/pull` and `/api/push` through `airlock serve` with AIRLOCK_REGISTRY naming a real Docker
Distribution registry (Debian's docker-registry) on loopback, driven by the official `ollama` client."""
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import ollama
import pytest

from conftest import MODEL, _free_port

REGISTRY_BIN = "/usr/bin/docker-registry"


def _wait_for_port(port, proc, what):
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(what + " did not start")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def registry():
    assert os.path.exists(REGISTRY_BIN), "install Debian's docker-registry (scripts/deps.sh)"
    root = tempfile.mkdtemp(prefix="airlock-registry-")
    port = _free_port()
    config = os.path.join(root, "config.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}/storage\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_port(port, proc, "docker-registry")
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait()
    subprocess.run(["rm", "-rf", root], check=False)


@pytest.fixture(scope="module")
def site(registry):
    """The registry seeded with the test model by `airlock push`, and an `airlock serve` on an
    empty store with AIRLOCK_REGISTRY pointing at it."""
    binary = os.environ["AIRLOCK_BIN"]
    seed = tempfile.mkdtemp(prefix="airlock-seed-")
    far = tempfile.mkdtemp(prefix="airlock-far-")
    # Its own config folder: no key is trusted there, so the server requires no signature.
    env = dict(os.environ, AIRLOCK_MODELS=seed, AIRLOCK_REGISTRY=registry, DOCKER_CONFIG=seed + "-docker", AIRLOCK_CONFIG=seed + "-config")
    env.pop("AIRLOCK_REGISTRY_AUTH", None)
    subprocess.run([binary, "import", os.environ["AIRLOCK_TEST_MODEL"], "--name", MODEL, "--link"], env=env, check=True, capture_output=True)
    subprocess.run([binary, "push", MODEL], env=env, check=True, capture_output=True)
    seed_id = subprocess.run([binary, "list", "--json"], env=env, check=True, capture_output=True, text=True).stdout
    port = _free_port()
    env = dict(env, AIRLOCK_MODELS=far, AIRLOCK_HOST=f"127.0.0.1:{port}", AIRLOCK_THREADS="2")
    # Pushing through the API is off unless the operator turns it on.
    proc = subprocess.Popen([binary, "serve", "--allow-push"], env=env, stderr=subprocess.DEVNULL)
    _wait_for_port(port, proc, "airlock serve")
    yield {"url": f"http://127.0.0.1:{port}", "seed": seed, "far": far, "seed_list": seed_id}
    proc.terminate()
    proc.wait(timeout=10)
    subprocess.run(["rm", "-rf", seed, far, seed + "-config"], check=False)


def test_closing_a_pull_stream_cancels_it_and_publishes_nothing(site):
    """Runs first: a client that goes away mid-blob stops the pull; the partial blob is kept for
    the next pull to resume (the next test), and no model appears."""
    import http.client
    import json

    host, port = site["url"].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/api/pull", body=json.dumps({"model": MODEL}), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    while True:
        line = json.loads(resp.readline())
        if line.get("total", 0) > 100_000_000 and line.get("completed", 0) > 0:
            break
    conn.close()
    deadline = time.time() + 30
    while os.path.exists(os.path.join(site["far"], ".airlock-staging")):
        assert time.time() < deadline, "the pull went on after its client left"
        time.sleep(0.05)
    assert not os.path.exists(os.path.join(site["far"], "manifests/registry.ollama.ai/library/gemma3/270m"))
    partials = os.listdir(os.path.join(site["far"], ".airlock-pull"))
    assert partials and partials[0].endswith(".partial"), partials


def test_ollama_client_pull_streams_ollamas_progress_and_the_model_arrives(site):
    import json

    client = ollama.Client(host=site["url"])
    statuses = [p for p in client.pull(MODEL, stream=True)]
    names = [p.status for p in statuses]
    assert names[0] == "pulling manifest"
    assert names[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    weights = [p for p in statuses if p.digest and p.total and p.total > 100_000_000]
    assert weights, names
    assert weights[0].status == "pulling " + weights[0].digest[7:19]
    assert weights[-1].completed == weights[-1].total
    assert any(0 < p.completed < p.total for p in weights), "no intermediate progress"

    seed_id = json.loads(site["seed_list"])[0]["id"]
    pulled = {m.model: m.digest for m in client.list().models}
    assert pulled.get(MODEL) == seed_id, pulled
    answer = client.generate(model=MODEL, prompt="The sky is", options={"num_predict": 4, "temperature": 0})
    assert answer.done and answer.response

    # Not streamed: one success object; again, everything is already there.
    assert client.pull(MODEL).status == "success"


def test_ollama_client_pull_of_a_missing_model_is_a_clear_error(site):
    client = ollama.Client(host=site["url"])
    with pytest.raises(ollama.ResponseError) as e:
        list(client.pull("not-there:1", stream=True))
    assert "not in the registry" in str(e.value)
    with pytest.raises(ollama.ResponseError) as e:
        client.pull("not-there:1")
    assert e.value.status_code == 404 and "not in the registry" in str(e.value)
    # The site registry is plain HTTP here; a name on another registry is refused, never contacted.
    with pytest.raises(ollama.ResponseError) as e:
        client.pull("elsewhere.example:5000/library/x:1")
    assert e.value.status_code == 400 and "site registry" in str(e.value)


def test_ollama_client_push_stores_the_same_manifest(site, registry):
    client = ollama.Client(host=site["url"])
    assert client.pull(MODEL).status == "success"
    client.copy(MODEL, "team/copy:v1")
    parts = list(client.push("team/copy:v1", stream=True))
    assert parts[-1].status == "success", [p.status for p in parts]
    req = urllib.request.Request(registry + "/v2/team/copy/manifests/v1", headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req) as r:
        body = r.read()
    with open(os.path.join(site["far"], "manifests/registry.ollama.ai/library/gemma3/270m"), "rb") as f:
        assert body == f.read(), "the registry's manifest differs from the store's bytes"
