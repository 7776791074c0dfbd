"""The README's examples, run as written, so the front door stays true.

Every ``curl -s localhost:PORT`` line in a ``sh`` block runs through bash against a test server
(the port swapped for its): 8080 is the demo model, 8000 the OpenAI-style LLM (the tests' tiny
Llama, served as ``my-llm``), 8001 the real all-MiniLM-L6-v2 embedder, 8002 the Keras file that
``examples/keras-model.py`` makes, 8003 the custom Python model in ``examples/python-model`` and
8004 the demo with the custom mapping the README shows (its flags read from the README itself), 8005 a
model repository of two copies of the demo, served with the README's flags. Where the next line is a
``# {...}`` comment, the answer must match it. ``curl -sN`` lines are streams and must end in
``data: [DONE]``. The Python blocks run too.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLES_DIR = README.parent / "examples"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def _curl_examples() -> list[tuple[str, str | None]]:
    out = []
    for block in _blocks("sh"):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"curl -sN? localhost:80(80|00|01|02|03|04|05)", line):
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                out.append((line, nxt[2:] if nxt.startswith("# {") else None))
    return out


def _close(got, want) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_close(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(_close(g, w) for g, w in zip(got, want))
    if isinstance(want, float):
        return isinstance(got, (int, float)) and abs(got - want) <= 1e-4 + 1e-3 * abs(want)
    return got == want


EXAMPLES = _curl_examples()


def test_readme_has_examples():
    assert len(EXAMPLES) >= 15


@pytest.fixture(scope="module")
def servers(request, start_server, model_dir):
    """README port -> test server address, started only when an example needs it."""
    started: dict[str, str] = {}

    def churn() -> str:
        if "churn" not in started:
            path = model_dir / "readme" / "churn.keras"
            path.parent.mkdir(parents=True, exist_ok=True)
            made = subprocess.run([sys.executable, str(EXAMPLES_DIR / "keras-model.py"), str(path)],
                                  capture_output=True, text=True, timeout=300)
            assert made.returncode == 0, made.stderr
            started["churn"] = start_server(path).address
        return started["churn"]

    def risk() -> str:
        if "risk" not in started:
            started["risk"] = start_server(EXAMPLES_DIR / "python-model", "--name", "risk").address
        return started["risk"]

    def mapped() -> str:
        if "mapped" not in started:
            (command,) = [b for b in _blocks("sh") if "--port 8004" in b]
            flags = shlex.split(command.split("curl")[0].replace("\\\n", " "))
            flags = flags[flags.index("--port") + 2:]
            started["mapped"] = start_server(request.getfixturevalue("iris_path"), "--name", "iris", *flags).address
        return started["mapped"]

    def repository() -> str:
        if "repository" not in started:
            (command,) = [b for b in _blocks("sh") if "--port 8005" in b]
            serve = next(ln for ln in command.splitlines() if "--model-repository" in ln)
            flags = shlex.split(serve)
            flags = flags[flags.index("--model-repository") + 2:]
            at = flags.index("--port")
            flags = flags[:at] + flags[at + 2:]  # the test server's own port
            root = model_dir / "readme-repository"
            for name in ("iris", "iris-b"):
                shutil.copytree(request.getfixturevalue("iris_path"), root / name, dirs_exist_ok=True)
            started["repository"] = start_server(None, "--model-repository", str(root), *flags).address
        return started["repository"]

    return {
        "8005": repository,
        "8004": mapped,
        "8080": lambda: request.getfixturevalue("iris").address,
        "8000": lambda: request.getfixturevalue("llm")[0].address,
        "8001": lambda: request.getfixturevalue("minilm").address,
        "8002": churn,
        "8003": risk,
    }


@pytest.mark.parametrize("command,documented", EXAMPLES, ids=[str(i) for i in range(len(EXAMPLES))])
def test_curl_example(servers, command, documented):
    port = re.search(r"localhost:(\d+)", command).group(1)
    cmd = command.replace(f"localhost:{port}", servers[port]())
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    if command.startswith("curl -sN"):
        events = done.stdout.strip().split("\n\n")
        assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events), done.stdout
        assert "error" not in json.loads(events[0][6:]), events[0]
        return
    body = json.loads(done.stdout)
    if documented is not None:
        assert _close(body, json.loads(documented)), f"{done.stdout}\n!=\n{documented}"
    else:
        assert "error" not in body, body


def test_openai_python_example(llm, minilm):
    (code,) = [b for b in _blocks("python") if "from openai import OpenAI" in b]
    code = code.replace("localhost:8000", llm[0].address).replace("localhost:8001", minilm.address)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "384"


def test_python_example(iris):
    (code,) = [b for b in _blocks("python") if "tritonclient.http" in b]
    done = subprocess.run(
        [sys.executable, "-c", code.replace("localhost:8080", iris.address)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "[[" in done.stdout


def test_grpc_python_example(iris):
    (code,) = [b for b in _blocks("python") if "tritonclient.grpc" in b]
    code = code.replace("localhost:8081", f"127.0.0.1:{iris.grpc_port}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "[[" in done.stdout
