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
    # JSON booleans are BOOL values only: not 1 or 0 in a numeric tensor, at any body size
    ("POST", "/v1/models/iris:predict", '{"instances": [[5.1, true, 1.4, 0.2]]}', 400,
     ["instances[0][1]: expected a number (FP32), got a boolean"]),
    ("POST", "/v1/models/iris:predict", '{"inputs": {"features": [[5.1, 3.5, 1.4, false]]}}', 400,
     ["inputs.features[0][3]"]),
    ("POST", "/v1/models/iris:predict", '{"instances": [{"features": [true, 1, 1, 1]}]}', 400,
     ["instances[0].features[0]"]),
    ("POST", "/v2/models/iris/infer", _v2("[5.1, 3.5, true, 0.2]"), 400, ["inputs[0] ('features').data[2]"]),
    ("POST", "/predict", '{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, true]}', 400,
     ["body.data[3]"]),
    ("POST", "/v1/models/iris:predict", '{"instances": [' + ", ".join([str(ROW)] * 500) + ', [1, 2, 3, true]]}', 400,
     ["instances[500][3]"]),
    # text is valid Unicode: a lone surrogate escape is refused where the body is read, NaN or not
    ("POST", "/v1/models/iris:predict", '{"instances": [[5.1, 3.5, 1.4, 0.2]], "signature_name": "\\ud800"}', 400,
     ["lone surrogate"]),
    ("POST", "/v1/models/iris:predict", '{"instances": [[NaN, 3.5, 1.4, 0.2]], "x": "\\udc00"}', 400,
     ["lone surrogate"]),
    ("POST", "/v2/models/iris/infer", _v2(str([0.5] * 4)).replace('"features"', '"\\ud800"') + " " * 9000, 400,
     ["lone surrogate"]),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), CASES, ids=[f"{c[0]} {c[1]} {i}" for i, c in enumerate(CASES)])
def test_hostile_requests_get_a_json_error_not_a_500(iris, method, path, body, status, words):
    r = requests.request(method, iris.url(path), data=body, timeout=30)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    for w in words:
        assert w in message, message
    assert requests.get(iris.url("/v2/health/live"), timeout=5).status_code == 200


def _v2_dup(first: list, last: list, pad: int) -> str:
    return ('{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", '
            f'"data": {first}, "data": {last}}}]}}' + " " * pad)


def test_duplicate_keys_read_the_same_at_every_body_size(iris):
    """The last of duplicate keys counts, whether the body is small (orjson) or large (simdjson)."""
    setosa, virginica = [5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]
    answers = []
    for pad in (0, 20_000):
        r = requests.post(iris.url("/v2/models/iris/infer"), data=_v2_dup(setosa, virginica, pad), timeout=30)
        assert r.status_code == 200, r.text
        answers.append(r.json()["outputs"][0]["data"])
    want = requests.post(iris.url("/v1/models/iris:predict"), json={"instances": [virginica]}, timeout=30).json()
    assert answers[0] == answers[1] == want["predictions"][0]
    # a NUL in a key is a character like any other, at every size: here a field V1 does not have
    for pad in (0, 20_000):
        body = '{"instances": [[5.1, 3.5, 1.4, 0.2]], "x\\u0000y": 1}' + " " * pad
        r = requests.post(iris.url("/v1/models/iris:predict"), data=body, timeout=30)
        assert r.status_code == 400 and "'x\\x00y': not a field of a V1 predict body" in r.json()["error"], r.text


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/v1/models/iris:predict", {"instances": [ROW], "instance": [ROW]}, "'instance': not a field of a V1"),
        ("/v1/models/iris:predict", {"instances": [ROW], "target": 1}, "'target': not a field of a V1 predict"),
        ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32",
                                                "data": ROW}], "output": []}, "body: 'output' is not a field"),
        ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32",
                                                "data": ROW, "contents": {}}]}, "'contents' is not a field"),
        ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ROW}],
                                   "outputs": [{"name": "probabilities", "binary": True}]}, "outputs[0]: 'binary'"),
    ],
)
def test_fields_a_body_does_not_have_are_refused_not_ignored(iris, path, body, words):
    r = requests.post(iris.url(path), json=body, timeout=30)
    assert r.status_code == 400 and words in r.json()["error"], r.text


def test_generation_fields_are_checked_not_ignored(llm, minilm):
    server, _ = llm
    cases = [
        ("/v1/completions", '{"prompt": "Hi", "temperature": NaN}', "temperature", "finite"),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "Hi"}], "top_p": NaN}', "top_p", "finite"),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "Hi"}], "tool_choice": "auto"}',
         "tool_choice", "needs tools"),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "Hi"}], "response_format": '
         '{"type": "json_object", "strict": true}}', "response_format", "response_format.strict: not a field"),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "Hi"}], "logit_bias": {"1": 5}}',
         "logit_bias", "not supported"),
        ("/v1/completions", '{"prompt": "Hi", "max_tokenz": 3}', "max_tokenz", "not a field"),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "Hi"}], "reasoning_effort": "low"}',
         "reasoning_effort", "not a field"),
        ("/v1/completions", '{"prompt": "\\ud800 hello"}', None, "lone surrogate"),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "\\udfff"}]}', None, "lone surrogate"),
        ("/v1/models/my-llm:predict", '{"instances": ["\\ud800"]}', None, "lone surrogate"),
    ]
    for path, body, param, words in cases:
        r = requests.post(server.url(path), data=body, timeout=30)
        assert r.status_code == 400, (body, r.text)
        error = r.json()["error"]
        message = error["message"] if isinstance(error, dict) else error
        assert words in message and (param is None or error["param"] == param), (body, error)
    for body in ('{"input": "\\ud800", "model": "minilm"}', '{"input": ["ok"], "model": "minilm", "extra": 1}'):
        assert requests.post(minilm.url("/v1/embeddings"), data=body, timeout=30).status_code == 400
    # user is read (an end-user id), and has no effect
    r = requests.post(server.url("/v1/completions"), json={"prompt": "Hi", "max_tokens": 2, "user": "u-1"}, timeout=30)
    assert r.status_code == 200, r.text


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
