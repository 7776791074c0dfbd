"""V2 (Open Inference Protocol) and the seed's single-tensor form over the real server."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from tests import models

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def tensor(data, shape, name="features", datatype="FP32"):
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


@pytest.fixture(scope="module")
def expected(iris_path):
    return models.in_process(iris_path / "1", features=np.array(ROWS, np.float32))["probabilities"]


def infer(server, path, body, status=200):
    r = requests.post(server.url(path), json=body, timeout=30)
    assert r.status_code == status, r.text
    return r.json()


def test_health_and_server_metadata(iris):
    assert requests.get(iris.url("/v2/health/live"), timeout=5).json() == {"live": True}
    assert requests.get(iris.url("/v2/health/ready"), timeout=5).json() == {"ready": True}
    meta = requests.get(iris.url("/v2"), timeout=5).json()
    assert meta["name"] == "modelserver" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_readiness(versioned, iris):
    meta = requests.get(iris.url("/v2/models/iris"), timeout=5).json()
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert meta["versions"] == ["1"] and meta["platform"] == "tensorflow_savedmodel"
    assert requests.get(versioned.url("/v2/models/scaled/versions/1"), timeout=5).json()["versions"] == ["1", "2"]
    assert requests.get(iris.url("/v2/models/iris/ready"), timeout=5).json() == {"name": "iris", "ready": True}
    assert requests.get(versioned.url("/v2/models/scaled/versions/2/ready"), timeout=5).status_code == 200


@pytest.mark.parametrize("nested", [False, True])
def test_infer_flat_and_nested_data(iris, expected, nested):
    data = ROWS if nested else [v for r in ROWS for v in r]
    out = infer(iris, "/v2/models/iris/infer", {"id": "abc", "inputs": [tensor(data, [2, 4])]})
    assert out["model_name"] == "iris" and out["model_version"] == "1" and out["id"] == "abc"
    (o,) = out["outputs"]
    assert o["name"] == "probabilities" and o["datatype"] == "FP32" and o["shape"] == [2, 3]
    np.testing.assert_allclose(np.reshape(o["data"], (2, 3)), expected, rtol=1e-6)


def test_infer_versions(versioned):
    body = {"inputs": [tensor([1.0, 2.0], [1, 2], name="x")]}
    assert infer(versioned, "/v2/models/scaled/versions/1/infer", body)["outputs"][0]["data"] == [1.0, 2.0]
    assert infer(versioned, "/v2/models/scaled/infer", body)["outputs"][0]["data"] == [2.0, 4.0]


def test_output_selection_and_every_dtype(multi):
    server, path = multi
    body = {
        "inputs": [
            tensor([[1, 2, 3], [4, 5, 6]], [2, 3], "x"),
            tensor([1, 2], [2], "k", "INT64"),
            tensor(["ab", "xyz"], [2], "text", "BYTES"),
            tensor([True, False], [2], "flag", "BOOL"),
        ],
        "outputs": [{"name": "shout"}, {"name": "negated"}, {"name": "doubled"}],
    }
    out = infer(server, "/v2/models/multi/infer", body)["outputs"]
    assert [o["name"] for o in out] == ["shout", "negated", "doubled"]
    assert out[0] == {"name": "shout", "datatype": "BYTES", "shape": [2], "data": ["AB!", "XYZ!"]}
    assert out[1] == {"name": "negated", "datatype": "BOOL", "shape": [2], "data": [False, True]}
    assert out[2] == {"name": "doubled", "datatype": "INT64", "shape": [2], "data": [2, 4]}


def test_single_tensor_seed_form(iris, expected):
    out = infer(iris, "/predict", tensor([v for r in ROWS for v in r], [2, 4]))
    np.testing.assert_allclose(np.reshape(out["outputs"][0]["data"], (2, 3)), expected, rtol=1e-6)
    explained = infer(iris, "/explain", tensor(ROWS, [2, 4]))
    assert explained["outputs"][0]["name"] == "features" and explained["outputs"][0]["shape"] == [2, 4]


def test_v2_body_on_seed_predict_path(iris, expected):
    out = infer(iris, "/predict", {"inputs": [tensor(ROWS, [2, 4])]})
    np.testing.assert_allclose(np.reshape(out["outputs"][0]["data"], (2, 3)), expected, rtol=1e-6)


def test_v2_explain_matches_v1_explain(iris):
    v2 = infer(iris, "/v2/models/iris/explain", {"inputs": [tensor(ROWS, [2, 4])]})["outputs"][0]
    v1 = requests.post(iris.url("/v1/models/iris:explain"), json={"instances": ROWS}, timeout=30).json()
    np.testing.assert_allclose(np.reshape(v2["data"], (2, 4)), v1["explanations"], rtol=1e-5)


def test_signature_parameter(iris, iris_path):
    body = {"parameters": {"signature_name": "classify"}, "inputs": [tensor(ROWS, [2, 4])]}
    out = {o["name"]: o for o in infer(iris, "/v2/models/iris/infer", body)["outputs"]}
    assert out["class_name"]["data"] == ["setosa", "virginica"]
