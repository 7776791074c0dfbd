"""The official ``tritonclient.http`` client, with JSON and with binary tensors, against the server."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests import models


@pytest.fixture(scope="module")
def iris_client(iris):
    return httpclient.InferenceServerClient(url=iris.address)


def test_server_and_model_state(iris_client):
    assert iris_client.is_server_live() and iris_client.is_server_ready()
    assert iris_client.is_model_ready("iris")
    meta = iris_client.get_model_metadata("iris")
    assert meta["inputs"][0]["name"] == "features"
    assert iris_client.get_server_metadata()["name"] == "modelserver"


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_infer_matches_in_process(iris_client, iris_path, binary_in, binary_out):
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], np.float32)
    inp = httpclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    out = httpclient.InferRequestedOutput("probabilities", binary_data=binary_out)
    result = iris_client.infer("iris", [inp], outputs=[out], request_id="r1")
    ref = models.in_process(iris_path / "1", features=x)["probabilities"]
    np.testing.assert_array_equal(result.as_numpy("probabilities"), ref)
    assert result.get_response()["id"] == "r1"


def test_default_outputs_come_back_binary(iris_client, iris_path):
    x = np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)
    inp = httpclient.InferInput("features", [1, 4], "FP32")
    inp.set_data_from_numpy(x)
    result = iris_client.infer("iris", [inp], model_version="1")
    np.testing.assert_array_equal(
        result.as_numpy("probabilities"), models.in_process(iris_path / "1", features=x)["probabilities"]
    )


@pytest.mark.parametrize("binary", [False, True])
def test_every_dtype_binary_and_json(multi, binary):
    server, path = multi
    client = httpclient.InferenceServerClient(url=server.address)
    arrays = {
        "x": (np.array([[1, 2, 3], [4, 5, 6]], np.float32), "FP32"),
        "k": (np.array([7, -3], np.int64), "INT64"),
        "text": (np.array([b"hi", "ünï".encode()], dtype=object), "BYTES"),
        "flag": (np.array([True, False]), "BOOL"),
    }
    inputs = []
    for name, (arr, dt) in arrays.items():
        i = httpclient.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(i)
    names = ["total", "doubled", "negated", "shout", "length"]
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
    result = client.infer("multi", inputs, outputs=outputs)
    ref = models.in_process(path, **{k: v for k, (v, _) in arrays.items()})
    for n in names:
        got = result.as_numpy(n)
        if ref[n].dtype == object:
            assert [g if isinstance(g, bytes) else g.encode() for g in got] == ref[n].tolist()
        else:
            np.testing.assert_array_equal(got, ref[n])
