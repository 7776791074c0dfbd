"""Hostile input: bodies and paths made to break parsers and arithmetic get a JSON 4xx naming the
problem, never a 500, and the server keeps serving."""

from __future__ import annotations

import pytest
import requests

ROW = [5.1, 3.5, 1.4, 0.2]
DEEP = "[" * 65 + "1" + "]" * 65
VERY_DEEP = "[" * 3000 + "1" + "]" * 3000


def _v2(data: str, shape: str = "[1, 4]", datatype: str = "FP32") -> str:
    return f'{{"inputs": [{{"name": "features", "shape": {shape}, "datatype": "{datatype}", "data": {data}}}]}}'


CASES = [
    # (method, path, raw body, status, words in the error)
    ("POST", "/v1/models/iris:predict", f'{{"instances": {DEEP}}}', 400, ["32 levels"]),
    ("POST", "/v1/models/iris:predict", f'{{"instances": [{ROW}, {DEEP}]}}', 400, ["32 levels"]),
    ("POST", "/v2/models/iris/infer", _v2(DEEP), 400, ["needs 4 values, got 1"]),  # data is read flat, any nesting
    ("POST", "/predict", f'{{"instances": {DEEP}}}', 400, ["32 levels"]),
    ("POST", "/v1/models/iris:explain", f'{{"instances": {DEEP}}}', 400, ["32 levels"]),
    ("POST", "/v2/models/iris/infer", _v2("[" + ", ".join(["1"] * 16) + "]", "[4611686018427387905, 4]"), 400,
     ["18446744073709551620 values", "got 16"]),
    ("POST", "/v2/models/iris/explain", _v2("[]", "[0, 4]"), 400, ["at least one row"]),
    ("POST", "/v1/models/iris/versions/%C2%B2:predict", f'{{"instances": [{ROW}]}}', 404, ["no version"]),
    ("GET", "/v1/models/iris/versions/%C2%B2", None, 404, ["no version"]),
    ("GET", "/v2/models/iris/versions/%C2%B2/ready", None, 404, ["no version"]),
    ("POST", "/v2/health/ready", "{}", 405, ["POST"]),
    ("POST", "/v1/models", "{}", 405, ["POST"]),
    ("POST", "/openapi.json", "{}", 405, ["POST"]),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), CASES, ids=[f"{c[0]} {c[1]} {i}" for i, c in enumerate(CASES)])
def test_hostile_requests_get_a_json_error_not_a_500(iris, method, path, body, status, words):
    r = requests.request(method, iris.url(path), data=body, timeout=30)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    for w in words:
        assert w in message, message
    assert requests.get(iris.url("/v2/health/live"), timeout=5).status_code == 200


def test_a_body_nested_thousands_deep_is_refused(iris):
    for path in ("/v1/models/iris:predict", "/v2/models/iris/infer", "/v1/completions"):
        r = requests.post(iris.url(path), data=f'{{"instances": {VERY_DEEP}}}', timeout=30)
        assert r.status_code in (400, 404), r.text  # 404: the demo serves no completions
        assert r.status_code == 404 or "1024 levels" in r.text


def _in_flight(server) -> float:
    text = requests.get(server.url("/metrics"), timeout=5).text
    line = next(ln for ln in text.splitlines() if ln.startswith("modelserver_in_flight_requests "))
    return float(line.split()[1])


def test_head_is_answered_without_a_body_and_leaves_nothing_in_flight(iris):
    import socket

    for path, status in (("/v1/models/iris:predict", 405), ("/v2/models/iris/infer", 405), ("/v2/health/ready", 200),
                         ("/v1/models/iris", 200), ("/predict", 405)):
        with socket.create_connection(("127.0.0.1", iris.port), timeout=10) as s:
            s.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = s.recv(65536).decode()
        assert head.startswith(f"HTTP/1.1 {status} "), head
        assert head.endswith("\r\n\r\n"), head  # headers only
        r = requests.head(iris.url(path), timeout=10)
        assert r.status_code == status and r.content == b""
    assert _in_flight(iris) == 1  # the /metrics request itself


def test_clients_that_leave_mid_body_are_not_left_in_flight(iris):
    import socket
    import time

    for path in ("/v1/models/iris:predict", "/v1/completions", "/v2/models/iris/ready"):
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", iris.port), timeout=10)
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{\"instances\"".encode())
            time.sleep(0.05)
            s.close()
    deadline = time.monotonic() + 10
    while _in_flight(iris) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _in_flight(iris) == 1
