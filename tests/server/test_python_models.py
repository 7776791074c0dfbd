"""Custom Python models (a directory with model.py): served like a SavedModel, and the model's own
faults told apart from the request's."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests import python_models

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], np.float32)


@pytest.fixture(scope="module")
def linear(start_server, model_dir: Path):
    path = python_models.linear(model_dir / "py" / "linear")
    return start_server(path), path


def test_v1_rows_answer_as_predict_does(linear):
    server, path = linear
    want = python_models.instance(path).predict({"x": X})
    r = requests.post(server.url("/v1/models/linear:predict"), json={"instances": X.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    np.testing.assert_allclose([p["scores"] for p in preds], want["scores"], rtol=1e-6)
    assert [p["label"] for p in preds] == want["label"].tolist()


def test_v2_and_the_seed_path_answer_the_same(linear):
    server, path = linear
    want = python_models.instance(path).predict({"x": X})
    body = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    for url in ("/v2/models/linear/infer", "/predict"):
        r = requests.post(server.url(url), json=body, timeout=30)
        assert r.status_code == 200, r.text
        outs = {o["name"]: o for o in r.json()["outputs"]}
        assert outs["label"]["datatype"] == "INT64" and outs["scores"]["shape"] == [3, 3]
        np.testing.assert_allclose(np.reshape(outs["scores"]["data"], (3, 3)), want["scores"], rtol=1e-6)


def test_the_declared_signature_is_served_and_checked(linear):
    server, _ = linear
    meta = requests.get(server.url("/v2/models/linear"), timeout=10).json()
    assert meta["platform"] == "python"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    r = requests.post(server.url("/v1/models/linear:predict"), json={"instances": [[1.0, 2.0, 3.0]]}, timeout=10)
    assert r.status_code == 400 and "instances[0]" in r.json()["error"]
    assert "curl" in requests.get(server.url("/"), timeout=10).text


def test_explain_is_the_model_s_own(linear):
    server, path = linear
    want = python_models.instance(path).explain({"x": X})["x"]
    r = requests.post(server.url("/v1/models/linear:explain"), json={"instances": X.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["explanations"], want, rtol=1e-5)


def test_concurrent_requests_merge_when_rows_are_independent(linear):
    from concurrent.futures import ThreadPoolExecutor

    server, path = linear
    model = python_models.instance(path)
    rows = [X[i % 3 : i % 3 + 1] * (1 + i) for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(
            lambda x: requests.post(server.url("/v1/models/linear:predict"), json={"instances": x.tolist()}, timeout=30),
            rows,
        ))
    for x, r in zip(rows, answers):
        assert r.status_code == 200
        np.testing.assert_allclose(r.json()["predictions"][0]["scores"], model.predict({"x": x})["scores"][0], rtol=1e-5)


@pytest.fixture(scope="module")
def broken(start_server, model_dir: Path):
    return start_server(python_models.write(model_dir / "py" / "broken", python_models.BROKEN))


@pytest.mark.parametrize(
    ("first", "words"),
    [
        (1, "raised ZeroDivisionError: division by zero in the model's own code"),
        (2, "returned outputs ['why'], expected a dict of the outputs ['y']"),
        (3, "returned 1 rows of 'y' for 2 input rows"),
        (4, "returned 'y' that is not FP32"),
    ],
)
def test_a_fault_in_the_model_is_a_500_that_says_so(broken, first, words):
    r = requests.post(broken.url("/v1/models/broken:predict"), json={"instances": [[first, 0.0], [0.0, 0.0]]},
                      timeout=30)
    assert r.status_code == 500
    message = r.json()["error"]
    assert "model 'broken'" in message and words in message and "not in the request" in message
    ok = requests.post(broken.url("/v1/models/broken:predict"), json={"instances": [[5.0, 1.0]]}, timeout=30)
    assert ok.status_code == 200 and ok.json()["predictions"] == [[50.0, 10.0]]
    assert "error" in requests.post(broken.url("/v1/models/broken:explain"), json={"instances": [[5.0, 1.0]]},
                                    timeout=30).json()


def test_a_load_that_raises_keeps_the_server_unready_and_says_why(start_server, tmp_path: Path):
    path = python_models.write(tmp_path / "needs-file", python_models.FAILS_TO_LOAD)
    server = start_server(path, ready=False)
    deadline = time.monotonic() + 60
    while True:
        r = requests.get(server.url("/v2/health/ready"), timeout=5)
        if r.json().get("reason") != "ModelLoading" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 503 and r.json()["reason"] == "ModelLoadFailed"
    assert "FileNotFoundError: tokenizer.bin is missing" in r.json()["error"]


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("class Other: pass\n", "defines no class Model"),
        ("class Model:\n    inputs = {'x': ('FLOAT', [-1])}\n    outputs = {'y': ('FP32', [-1])}\n"
         "    def predict(self, i): return i\n", "V2 datatype"),
        ("class Model:\n    inputs = {'x': ('FP32', [-1])}\n    def predict(self, i): return i\n", "Model.outputs"),
        ("import not_a_module_anywhere\n", "failed to import: ModuleNotFoundError"),
    ],
)
def test_a_model_py_that_breaks_the_contract_says_what_to_fix(tmp_path, source, words):
    from modelserver.errors import ModelLoadError
    from modelserver.runtime.python import load_python

    path = python_models.write(tmp_path / "bad", source)
    with pytest.raises(ModelLoadError, match=words):
        load_python("bad", 1, path)


def test_a_target_for_the_model_s_own_explain_is_refused(linear):
    server, _ = linear
    r = requests.post(server.url("/v1/models/linear:explain"), json={"instances": X.tolist(), "target": "scores"},
                      timeout=30)
    assert r.status_code == 400 and "takes no target" in r.json()["error"]
