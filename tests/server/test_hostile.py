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
