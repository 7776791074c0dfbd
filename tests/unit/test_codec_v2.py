"""V2 decoding, the single-tensor form and the binary extension, table-driven."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from modelserver.codecs import v2
from modelserver.errors import InvalidInput
from modelserver.interface import Signature, TensorSpec

SIG = Signature(
    "serving_default",
    (TensorSpec("x", "FP32", (-1, 2)), TensorSpec("s", "BYTES", (-1,))),
    (TensorSpec("y", "FP32", (-1,)), TensorSpec("t", "BYTES", (-1,))),
)
ONE = Signature("serving_default", (TensorSpec("x", "FP32", (-1, 2)),), (TensorSpec("y", "FP32", (-1,)),))


def body(x_data=None, s_data=None, **extra):
    return {
        "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": x_data or [1, 2, 3, 4]},
            {"name": "s", "shape": [2], "datatype": "BYTES", "data": s_data or ["a", "b"]},
        ],
        **extra,
    }


def test_decode_json():
    req = v2.decode(body(x_data=[[1, 2], [3, 4]]), b"", SIG, max_instances=10)
    assert req.inputs["x"].tolist() == [[1, 2], [3, 4]] and req.inputs["s"].tolist() == [b"a", b"b"]
    assert req.outputs is None and req.id


@pytest.mark.parametrize(
    "mutate,words",
    [
        (lambda b: b["inputs"][0].update(datatype="INT32"), ["expected datatype FP32, got INT32"]),
        (lambda b: b["inputs"][0].update(shape=[2, 3]), ["[-1, 2]", "[2, 3]"]),
        (lambda b: b["inputs"][0].update(data=[1, 2, 3]), ["needs 4 values, got 3"]),
        (lambda b: b["inputs"][0].pop("data"), ["missing field 'data'"]),
        (lambda b: b["inputs"][0].pop("name"), ["missing field 'name'"]),
        (lambda b: b["inputs"][0].update(name="q"), ["unknown input 'q'"]),
        (lambda b: b["inputs"].pop(1), ["missing input 's'"]),
        (lambda b: b["inputs"].append(dict(b["inputs"][0])), ["given twice"]),
        (lambda b: b["inputs"][1].update(shape=[3], data=["a", "b", "c"]), ["mismatched batch"]),
        (lambda b: b.update(outputs=[{"name": "nope"}]), ["unknown output 'nope'"]),
        (lambda b: b["inputs"][0].update(data=[1, 2, "x", 4]), ["inputs[0] ('x').data[2]", "number"]),
        (lambda b: b.update(id=5), ["id", "string"]),
    ],
)
def test_decode_errors(mutate, words):
    b = body()
    mutate(b)
    with pytest.raises(InvalidInput) as e:
        v2.decode(b, b"", SIG, max_instances=10)
    for w in words:
        assert w in e.value.message, e.value.message


def test_binary_inputs_and_outputs_round_trip():
    x = np.array([[1, 2], [3, 4]], np.float32)
    strings = [b"hi", b"\x00\xff"]
    s_raw = b"".join(struct.pack("<I", len(v)) + v for v in strings)
    header = {
        "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
            {"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(s_raw)}},
        ],
        "outputs": [{"name": "t", "parameters": {"binary_data": True}}, {"name": "y"}],
    }
    head = orjson.dumps(header)
    json_part, tail = v2.split_binary(head + x.tobytes() + s_raw, str(len(head)))
    req = v2.decode(orjson.loads(json_part), tail, SIG, max_instances=10)
    np.testing.assert_array_equal(req.inputs["x"], x)
    assert req.inputs["s"].tolist() == strings
    out, raw = v2.encode(req, {"y": np.array([1.0, 2.0], np.float32), "t": req.inputs["s"]}, "m", 3)
    assert [o["name"] for o in out["outputs"]] == ["t", "y"]
    assert out["outputs"][0]["parameters"] == {"binary_data_size": len(s_raw)} and raw == s_raw
    assert out["outputs"][1]["data"].tolist() == [1.0, 2.0] and out["model_version"] == "3"


@pytest.mark.parametrize(
    "size,tail,words",
    [
        (16, b"\x00" * 12, ["16", "12 remain"]),
        (12, b"\x00" * 12, ["4 FP32 values (16 bytes), got 12"]),
        (16, b"\x00" * 24, ["8 bytes after the last binary input"]),
    ],
)
def test_binary_errors(size, tail, words):
    header = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": size}}]}
    with pytest.raises(InvalidInput) as e:
        v2.decode(header, tail, ONE, max_instances=10)
    for w in words:
        assert w in e.value.message, e.value.message


def test_header_length_errors():
    with pytest.raises(InvalidInput, match="integer"):
        v2.split_binary(b"{}", "abc")
    with pytest.raises(InvalidInput, match="at most"):
        v2.split_binary(b"{}", "10")


def test_body_kinds():
    assert v2.is_v2(body()) and not v2.is_single_tensor(body())
    assert v2.is_single_tensor({"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]})
    assert not v2.is_v2({"inputs": [[1, 2]]})  # V1 columnar
    req = v2.decode_single({"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}, ONE, max_instances=5)
    assert req.inputs["x"].shape == (1, 2)
    with pytest.raises(InvalidInput, match="one input"):
        v2.decode_single({"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}, SIG, max_instances=5)


# -- the repository extension's bodies --------------------------------------------------------------
def test_repository_index_bodies():
    assert v2.parse_repository_index(None) is False
    assert v2.parse_repository_index({}) is False
    assert v2.parse_repository_index({"ready": True}) is True
    for body, words in (({"ready": 1}, "ready: expected true or false"), ({"repository": "x"}, "'repository'"),
                        ([], "expected a JSON object")):
        with pytest.raises(InvalidInput, match=words):
            v2.parse_repository_index(body)


def test_repository_load_and_unload_bodies():
    v2.parse_repository_call(None, "load")
    v2.parse_repository_call({"parameters": {}}, "load")
    v2.parse_repository_call({"parameters": {"unload_dependents": False}}, "unload")
    cases = [
        ({"parameters": {"config": "{}"}}, "load", "'config' is not served"),
        ({"parameters": {"unload_dependents": True}}, "load", "'unload_dependents' is not served"),
        ({"parameters": {"unload_dependents": "yes"}}, "unload", "expected true or false"),
        ({"parameters": []}, "unload", "parameters: expected an object"),
        ({"model": "x"}, "load", "'model' is not a field here"),
        ("load", "load", "expected a JSON object"),
    ]
    for body, verb, words in cases:
        with pytest.raises(InvalidInput, match=words):
            v2.parse_repository_call(body, verb)
