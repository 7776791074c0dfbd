"""V1 over the real server, every answer compared with the model called in-process."""

from __future__ import annotations

import math

import numpy as np
import pytest
import requests

from tests import models

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def post(server, path: str, body: dict) -> dict:
    r = requests.post(server.url(path), json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


@pytest.fixture(scope="module")
def expected(iris_path):
    return models.in_process(iris_path / "1", features=np.array(ROWS, np.float32))["probabilities"]


@pytest.mark.parametrize(
    "path",
    ["/v1/models/iris:predict", "/v1/models/iris/versions/1:predict", "/predict", "/serving_default/predict"],
)
def test_row_format_matches_in_process(iris, expected, path):
    got = post(iris, path, {"instances": ROWS})["predictions"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_columnar_format(iris, expected):
    got = post(iris, "/v1/models/iris:predict", {"inputs": ROWS})["outputs"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_named_instance_objects(iris, expected):
    got = post(iris, "/v1/models/iris:predict", {"instances": [{"features": r} for r in ROWS]})["predictions"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_posit_whole_tensor_instances_run_as_their_own_batches(iris, expected):
    body = {"instances": [[ROWS[0]], [ROWS[1], ROWS[2]]]}  # a 1x4 and a 2x4 matrix
    got = post(iris, "/predict", body)["predictions"]
    assert len(got) == 2
    np.testing.assert_allclose(got[0], expected[:1], rtol=1e-6)
    np.testing.assert_allclose(got[1], expected[1:], rtol=1e-6)


def test_signature_by_name_and_by_path_with_string_outputs(iris, iris_path):
    ref = models.in_process(iris_path / "1", "classify", features=np.array(ROWS, np.float32))
    for path, body in [
        ("/v1/models/iris:predict", {"signature_name": "classify", "instances": ROWS}),
        ("/classify/predict", {"instances": ROWS}),
    ]:
        got = post(iris, path, body)["predictions"]
        assert [p["class_name"] for p in got] == [c.decode() for c in ref["class_name"]]
        assert [p["class_id"] for p in got] == ref["class_id"].tolist()
        np.testing.assert_allclose([p["probabilities"] for p in got], ref["probabilities"], rtol=1e-6)


def test_nan_and_infinity_are_accepted(iris):
    r = requests.post(
        iris.url("/v1/models/iris:predict"), data='{"instances": [[NaN, 3.5, Infinity, -Infinity]]}', timeout=30
    )
    assert r.status_code == 200, r.text
    assert "NaN" in r.text
    assert all(math.isnan(v) for v in r.json()["predictions"][0])


def test_multiple_named_inputs_and_dtypes(multi):
    server, path = multi
    instances = [
        {"x": [1.0, 2.0, 3.0], "k": 2, "text": "abc", "flag": True},
        {"x": [0.5, 0.5, 0.0], "k": -1, "text": {"b64": "aMOp"}, "flag": False},  # b64 of "hé"
    ]
    got = post(server, "/v1/models/multi:predict", {"instances": instances})["predictions"]
    ref = models.in_process(
        path,
        x=np.array([i["x"] for i in instances], np.float32),
        k=np.array([2, -1], np.int64),
        text=np.array([b"abc", "hé".encode()], object),
        flag=np.array([True, False]),
    )
    assert [g["total"] for g in got] == pytest.approx(ref["total"].tolist())
    assert [g["doubled"] for g in got] == ref["doubled"].tolist()
    assert [g["negated"] for g in got] == ref["negated"].tolist()
    assert [g["shout"] for g in got] == [s.decode() for s in ref["shout"]]
    assert [g["length"] for g in got] == ref["length"].tolist()


def test_multi_input_columnar(multi):
    server, path = multi
    body = {"inputs": {"x": [[1, 2, 3]], "k": [3], "text": ["a"], "flag": [False]}}
    got = post(server, "/v1/models/multi:predict", body)["outputs"]
    assert got["total"] == [18.0] and got["doubled"] == [6] and got["shout"] == ["A!"] and got["negated"] == [True]


def test_versions_labels_and_latest(versioned):
    body = {"instances": [[1.0, 2.0]]}
    assert post(versioned, "/v1/models/scaled/versions/1:predict", body)["predictions"] == [[1.0, 2.0]]
    assert post(versioned, "/v1/models/scaled/versions/2:predict", body)["predictions"] == [[2.0, 4.0]]
    assert post(versioned, "/v1/models/scaled:predict", body)["predictions"] == [[2.0, 4.0]]
    assert post(versioned, "/v1/models/scaled/labels/stable:predict", body)["predictions"] == [[1.0, 2.0]]
    assert post(versioned, "/v1/models/scaled/labels/canary:predict", body)["predictions"] == [[2.0, 4.0]]


def test_model_status_metadata_and_list(versioned, iris):
    status = requests.get(versioned.url("/v1/models/scaled"), timeout=5).json()
    assert [s["version"] for s in status["model_version_status"]] == ["2", "1"]
    assert all(s["state"] == "AVAILABLE" and s["status"]["error_code"] == "OK" for s in status["model_version_status"])
    one = requests.get(versioned.url("/v1/models/scaled/versions/1"), timeout=5).json()
    assert [s["version"] for s in one["model_version_status"]] == ["1"]
    meta = requests.get(iris.url("/v1/models/iris/metadata"), timeout=5).json()
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) == {"serving_default", "classify"}
    feat = sigs["serving_default"]["inputs"]["features"]
    assert feat["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in feat["tensor_shape"]["dim"]] == ["-1", "4"]
    listing = requests.get(iris.url("/v1/models"), timeout=5).json()
    assert listing["models"][0]["name"] == "iris" and listing["models"][0]["versions"] == ["1"]


def test_scalar_output_gives_a_one_element_list(start_server, model_dir):
    server = start_server(models.scalar_out(model_dir / "scalar"))
    got = post(server, "/v1/models/scalar:predict", {"instances": [[1.0, 2.0], [3.0, 4.5]]})
    assert got == {"predictions": [10.5]}


def test_explain_integrated_gradients_is_complete(iris, iris_path, expected):
    """Attributions have the instances' shape and add up to f(x) - f(0) for the predicted class."""
    got = post(iris, "/v1/models/iris:explain", {"instances": ROWS})["explanations"]
    assert np.asarray(got).shape == (3, 4)
    base = models.in_process(iris_path / "1", features=np.zeros((3, 4), np.float32))["probabilities"]
    cls = expected.argmax(axis=1)
    for i in range(3):
        assert sum(got[i]) == pytest.approx(expected[i, cls[i]] - base[i, cls[i]], abs=0.02)
    seed = post(iris, "/explain", {"instances": ROWS})["explanations"]
    np.testing.assert_allclose(seed, got, rtol=1e-5)


def test_explain_named_instances_keep_their_names(multi):
    server, _ = multi
    body = {"instances": [{"x": [1.0, 2.0, 3.0], "k": 2, "text": "a", "flag": True}]}
    got = post(server, "/v1/models/multi:explain", body)["explanations"]
    assert list(got[0]) == ["x"]  # only float inputs are attributed
    assert sum(got[0]["x"]) == pytest.approx(12.0, rel=1e-3)  # total = 2 * (1 + 2 + 3), linear in x


def test_large_bodies_match_in_process(iris, iris_path):
    """Bodies past fastparse's threshold (read by simdjson) answer as small ones do."""
    rows = np.round(np.random.default_rng(1).random((600, 4)) * 7, 3)
    want = models.in_process(iris_path / "1", features=rows.astype(np.float32))["probabilities"]
    for path, body, key in [
        ("/v1/models/iris:predict", {"instances": rows.tolist()}, "predictions"),
        ("/predict", {"inputs": rows.tolist()}, "outputs"),
        ("/v2/models/iris/infer", {"inputs": [{"name": "features", "shape": [600, 4], "datatype": "FP32",
                                               "data": rows.ravel().tolist()}]}, "outputs"),
    ]:
        got = post(iris, path, body)[key]
        got = got[0]["data"] if path.startswith("/v2") else got
        np.testing.assert_allclose(np.reshape(got, want.shape), want, rtol=1e-6)
    ragged = rows.tolist()
    ragged[7] = ragged[7][:3]
    r = requests.post(iris.url("/v1/models/iris:predict"), json={"instances": ragged}, timeout=30)
    assert r.status_code == 400 and r.json()["error"].startswith("instances[7]"), r.text
