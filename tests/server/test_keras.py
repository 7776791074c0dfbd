"""Keras model files served directly: named inputs and outputs over V1 and V2 (JSON and binary),
explanations, legacy .h5, versions, and custom layers that must be registered."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

from tests import keras_models

AGE = np.array([[35.0], [61.0], [18.0]], np.float32)
FEATURES = np.array([[0.1, -0.4, 2.0], [1.5, 0.3, -0.7], [0.0, 0.0, 1.0]], np.float32)


@pytest.fixture(scope="module")
def two(start_server, model_dir: Path):
    path = keras_models.two_inputs(model_dir / "keras" / "churn.keras")
    return start_server(path), path


def test_named_instances_answer_as_the_model_predicts(two):
    server, path = two
    score, proba = keras_models.predict(path, AGE, FEATURES)
    instances = [{"age": a.tolist(), "features": f.tolist()} for a, f in zip(AGE, FEATURES)]
    r = requests.post(server.url("/v1/models/churn:predict"), json={"instances": instances}, timeout=30)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    np.testing.assert_allclose([p["score"] for p in preds], score, atol=1e-5)
    np.testing.assert_allclose([p["proba"] for p in preds], proba, atol=1e-5)


def test_columnar_and_v2_answer_the_same(two):
    server, path = two
    score, proba = keras_models.predict(path, AGE, FEATURES)
    r = requests.post(server.url("/v1/models/churn:predict"),
                      json={"inputs": {"age": AGE.tolist(), "features": FEATURES.tolist()}}, timeout=30)
    np.testing.assert_allclose(r.json()["outputs"]["proba"], proba, atol=1e-5)
    body = {"inputs": [
        {"name": "age", "shape": [3, 1], "datatype": "FP32", "data": AGE.ravel().tolist()},
        {"name": "features", "shape": [3, 3], "datatype": "FP32", "data": FEATURES.ravel().tolist()},
    ]}
    r = requests.post(server.url("/v2/models/churn/infer"), json=body, timeout=30)
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    assert outs["score"]["shape"] == [3, 1] and outs["proba"]["datatype"] == "FP32"
    np.testing.assert_allclose(np.reshape(outs["score"]["data"], (3, 1)), score, atol=1e-5)


def test_signature_from_the_model(two):
    server, _ = two
    meta = requests.get(server.url("/v2/models/churn"), timeout=10).json()
    assert meta["platform"] == "keras"
    assert {t["name"]: t["shape"] for t in meta["inputs"]} == {"age": [-1, 1], "features": [-1, 3]}
    assert {t["name"]: t["shape"] for t in meta["outputs"]} == {"score": [-1, 1], "proba": [-1, 3]}
    home = requests.get(server.url("/"), timeout=10).text
    assert "features" in home and "proba" in home


def test_binary_tensors_with_tritonclient(two):
    server, path = two
    client = httpclient.InferenceServerClient(url=server.address)
    inputs = []
    for name, arr in (("age", AGE), ("features", FEATURES)):
        inp = httpclient.InferInput(name, list(arr.shape), "FP32")
        inp.set_data_from_numpy(arr, binary_data=True)
        inputs.append(inp)
    result = client.infer("churn", inputs, outputs=[httpclient.InferRequestedOutput("proba", binary_data=True)])
    np.testing.assert_allclose(result.as_numpy("proba"), keras_models.predict(path, AGE, FEATURES)[1], atol=1e-5)


def test_a_wrong_shape_is_a_400_naming_it(two):
    server, _ = two
    r = requests.post(server.url("/v1/models/churn:predict"),
                      json={"instances": [{"age": [1.0], "features": [1.0, 2.0]}]}, timeout=10)
    assert r.status_code == 400 and "features" in r.json()["error"]


def test_explain_gives_attributions_shaped_as_the_inputs(two):
    server, _ = two
    r = requests.post(server.url("/v1/models/churn:explain"),
                      json={"inputs": {"age": AGE.tolist(), "features": FEATURES.tolist()}, "target": "score"},
                      timeout=60)
    assert r.status_code == 200, r.text
    ex = r.json()["explanations"]
    assert np.shape(ex["age"]) == AGE.shape and np.shape(ex["features"]) == FEATURES.shape


def test_legacy_h5_and_numbered_versions(start_server, model_dir: Path):
    base = model_dir / "keras-versions" / "flowers"
    keras_models.sequential_h5(base / "1" / "model.h5", seed=1)
    keras_models.sequential_h5(base / "2" / "model.h5", seed=2)
    server = start_server(base)
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)
    for version in (1, 2):
        r = requests.post(server.url(f"/v1/models/flowers/versions/{version}:predict"),
                          json={"instances": x.tolist()}, timeout=30)
        assert r.status_code == 200, r.text
        want = keras_models.predict(base / str(version) / "model.h5", x)[0]
        np.testing.assert_allclose(r.json()["predictions"], want, atol=1e-5)


def _wait_not_loading(server, timeout: float = 90) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = requests.get(server.url("/v2/health/ready"), timeout=5)
        if r.status_code == 200 or r.json().get("reason") != "ModelLoading" or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_an_unregistered_custom_layer_names_the_class_and_how_to_register_it(start_server, tmp_path: Path):
    path = keras_models.with_custom_layer(tmp_path / "custom.keras", tmp_path / "layers")
    server = start_server(path, ready=False)
    r = _wait_not_loading(server)
    assert r.status_code == 503 and r.json()["reason"] == "ModelLoadFailed"
    message = r.json()["error"]
    assert "TimesTwoPlus" in message and "register_keras_serializable" in message and "--imports" in message


def test_imports_register_the_custom_layer(start_server, tmp_path: Path):
    path = keras_models.with_custom_layer(tmp_path / "custom.keras", tmp_path / "layers", module="mylayers")
    server = start_server(path, "--imports", "mylayers", env={"PYTHONPATH": str(tmp_path / "layers")})
    r = requests.post(server.url("/v1/models/custom:predict"), json={"instances": [[1.0, 2.0]]}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], [[2.5, 4.5]], atol=1e-6)
