"""Bad input: the right status, a JSON body saying what was expected and what came, and the server lives on."""

from __future__ import annotations

import pytest
import requests

from tests import models

ROW = [5.1, 3.5, 1.4, 0.2]
GOOD = {"instances": [ROW]}

# (path, body or raw string, status, words the message must contain)
IRIS_CASES = [
    ("/v1/models/iris:predict", {"instances": [ROW, ROW, ROW, [[1, 2]]]}, 400, ["instances[3]", "[4]", "[1, 2]"]),
    ("/v1/models/iris:predict", {"instances": ROW}, 400, ["instances[0]", "shape [4]", "got shape []"]),
    ("/v1/models/iris:predict", {"instances": [ROW, [1, 2, 3]]}, 400, ["instances[1]", "[4]", "[3]"]),
    ("/v1/models/iris:predict", {"instances": [ROW, [[1, 2, 3, 4]]]}, 400, ["instances[1]", "mixed ranks"]),
    ("/v1/models/iris:predict", {"instances": [ROW, [1, 2, "x", 4]]}, 400, ["instances[1][2]", "number", "string"]),
    ("/v1/models/iris:predict", {"instances": [ROW, [1, 2, None, 4]]}, 400, ["instances[1][2]", "null"]),
    ("/v1/models/iris:predict", {"instances": [[[[1, 2, 3, 4]]]]}, 400, ["instances[0]", "[1, 1, 4]"]),
    ("/v1/models/iris:predict", {"inputs": [[1, 2, 3]]}, 400, ["inputs", "[-1, 4]", "[1, 3]"]),
    ("/v1/models/iris:predict", {"instances": []}, 400, ["instances", "empty"]),
    ("/v1/models/iris:predict", {"rows": [ROW]}, 400, ["instances", "inputs", "rows"]),
    ("/v1/models/iris:predict", {"instances": [ROW], "inputs": [ROW]}, 400, ["exactly one"]),
    ("/v1/models/iris:predict", [ROW], 400, ["JSON object", "list"]),
    ("/v1/models/iris:predict", '{"instances": [[5.1,', 400, ["invalid JSON"]),
    ("/v1/models/iris:predict", "", 400, ["empty"]),
    ("/v1/models/nope:predict", GOOD, 404, ["unknown model 'nope'", "iris"]),
    ("/v1/models/iris/versions/9:predict", GOOD, 404, ["no version '9'"]),
    ("/v1/models/iris/labels/gold:predict", GOOD, 404, ["no version label 'gold'"]),
    ("/v1/models/iris:predict", {"signature_name": "nope", **GOOD}, 404, ["no signature 'nope'", "classify"]),
    ("/nope/predict", GOOD, 404, ["no signature 'nope'"]),
    ("/v2/models/nope/infer", {"inputs": []}, 404, ["unknown model"]),
    ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]}, 400, ["FP32", "INT64"]),
    ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32", "data": ROW}]}, 400, ["[2, 4]", "8 values", "got 4"]),
    ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, 400, ["[-1, 4]", "[1, 3]"]),
    ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [1, 4], "data": ROW}]}, 400, ["missing field 'datatype'"]),
    ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP33", "data": ROW}]}, 400, ["FP33", "FP32"]),
    ("/v2/models/iris/infer", {"inputs": [{"name": "other", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}, 400, ["unknown input 'other'"]),
    ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ROW}], "outputs": [{"name": "zz"}]}, 400, ["unknown output 'zz'"]),
    ("/v2/models/iris/infer", {"inputs": "x"}, 400, ["inputs", "list"]),
    ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [1, -4], "datatype": "FP32", "data": ROW}]}, 400, ["shape", "non-negative"]),
    ("/predict", {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2]}, 400, ["needs 4 values"]),
    ("/v2/models/iris/versions/3/infer", {"inputs": []}, 404, ["no version '3'"]),
    ("/no/such/path", GOOD, 404, ["no such endpoint"]),
]


def _send(server, path, body):
    if isinstance(body, str):
        return requests.post(server.url(path), data=body, timeout=30)
    return requests.post(server.url(path), json=body, timeout=30)


@pytest.mark.parametrize("path,body,status,words", IRIS_CASES, ids=[f"{i}" for i in range(len(IRIS_CASES))])
def test_bad_input_on_iris(iris, path, body, status, words):
    r = _send(iris, path, body)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    message = r.json()["error"]
    for w in words:
        assert w in message, message
    assert _send(iris, "/v1/models/iris:predict", GOOD).status_code == 200  # still serving


MULTI_ROW = {"x": [1.0, 2.0, 3.0], "k": 2, "text": "a", "flag": True}
MULTI_CASES = [
    ({"inputs": {"x": [[1, 2, 3], [4, 5, 6]], "k": [1], "text": ["a", "b"], "flag": [True, False]}}, ["mismatched batch", "'k' has 1"]),
    ({"instances": [MULTI_ROW, {k: v for k, v in MULTI_ROW.items() if k != "k"}]}, ["instances[1]", "missing input 'k'"]),
    ({"instances": [{**MULTI_ROW, "extra": 1}]}, ["instances[0]", "unknown input 'extra'"]),
    ({"instances": [MULTI_ROW, {**MULTI_ROW, "k": 1.5}]}, ["instances[1].k", "integer", "1.5"]),
    ({"instances": [{**MULTI_ROW, "k": 2**70}]}, ["instances[0].k", "integer"]),
    ({"instances": [{**MULTI_ROW, "flag": "yes"}]}, ["instances[0].flag", "boolean"]),
    ({"instances": [{**MULTI_ROW, "text": {"b64": "%%%"}}]}, ["instances[0].text", "base64"]),
    ({"instances": [ROW]}, ["instances[0]", "expected an object"]),
]


@pytest.mark.parametrize("body,words", MULTI_CASES, ids=[f"{i}" for i in range(len(MULTI_CASES))])
def test_bad_input_on_named_inputs(multi, body, words):
    server, _ = multi
    r = _send(server, "/v1/models/multi:predict", body)
    assert r.status_code == 400, r.text
    for w in words:
        assert w in r.json()["error"], r.json()["error"]


def test_v2_mismatched_batch(multi):
    server, _ = multi
    body = {"inputs": [
        {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]},
        {"name": "k", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [True, False]},
    ]}
    r = _send(server, "/v2/models/multi/infer", body)
    assert r.status_code == 400 and "mismatched batch" in r.json()["error"]


def test_model_runtime_error_is_a_400_and_not_fatal(start_server, model_dir):
    server = start_server(models.picky(model_dir / "picky"))
    r = _send(server, "/v1/models/picky:predict", {"instances": [[1.0, -1.0]]})
    assert r.status_code == 400 and "x must be >= 0" in r.json()["error"]
    assert _send(server, "/v1/models/picky:predict", {"instances": [[4.0, 9.0]]}).json() == {"predictions": [[2.0, 3.0]]}


def test_explain_where_it_cannot_apply(start_server, model_dir):
    server = start_server(models.int_only(model_dir / "ints"))
    r = _send(server, "/v1/models/ints:explain", {"instances": [1, 2]})
    assert r.status_code == 400 and "float input" in r.json()["error"]
    assert _send(server, "/v1/models/ints:predict", {"instances": [1, 2]}).json() == {"predictions": [2, 3]}


def test_wrong_method_is_json(iris):
    r = requests.get(iris.url("/v1/models/iris:predict"), timeout=5)
    assert r.status_code == 405 and "GET" in r.json()["error"]
