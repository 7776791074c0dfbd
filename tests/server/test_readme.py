"""The README's examples, run as written against the demo model, so the front door stays true.

Every ``curl -s localhost:8080`` line in a ``sh`` block runs through bash (the port swapped for the
test server's); where the next line is a ``# {...}`` comment, the answer must match it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def _curl_examples() -> list[tuple[str, str | None]]:
    out = []
    for block in _blocks("sh"):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("curl -s localhost:8080"):
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


@pytest.mark.parametrize("command,documented", EXAMPLES, ids=[str(i) for i in range(len(EXAMPLES))])
def test_curl_example(iris, command, documented):
    cmd = command.replace("localhost:8080", iris.address)
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    if documented is not None:
        assert _close(body, json.loads(documented)), f"{done.stdout}\n!=\n{documented}"
    else:
        assert "error" not in body, body


def test_python_example(iris):
    (code,) = [b for b in _blocks("python") if "tritonclient" in b]
    done = subprocess.run(
        [sys.executable, "-c", code.replace("localhost:8080", iris.address)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "[[" in done.stdout
