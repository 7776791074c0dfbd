"""The connection layer's pure parts: the JSON refusal bytes, and the descriptor budget."""

from __future__ import annotations

import json
import subprocess
import sys

from modelserver.server.connection import FD_RESERVE, refusal
from modelserver.server.pipeline import declared_length


def test_a_refusal_is_a_whole_json_answer_that_closes():
    raw = refusal(503, "Service Unavailable", "full", {"Retry-After": "1"})
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 503 Service Unavailable" and b"Connection: close" in lines
    assert f"Content-Length: {len(body)}".encode() in lines and b"Retry-After: 1" in lines
    assert json.loads(body) == {"error": "full"}


def test_the_connection_limit_stays_inside_the_descriptor_limit():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200)); "
            "from modelserver.server.connection import descriptor_budget; print(descriptor_budget())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == 200 - FD_RESERVE
    # a soft limit below the hard one is raised first
    code = code.replace("(200, 200)", "(150, 300)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == 300 - FD_RESERVE


def test_declared_lengths():
    assert declared_length("12") == 12 and declared_length("9, 9") == 9 and declared_length("9,9 ,9") == 9
    assert declared_length("5, 6") is None and declared_length("abc") is None and declared_length("\u00b2") is None
    assert declared_length(None) is None and declared_length("") is None
