"""V2 decoding, the single-tensor form and the binary extension, table-driven."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from modelserver.codecs import v2
from modelserver.errors import InvalidInput
from modelserver.runtime.base import Signature, TensorSpec

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


# -- parse: large bodies read numbers straight into arrays -----------------------------------------
def _typed_sig(datatype: str, n: int) -> Signature:
    return Signature("serving_default", (TensorSpec("x", datatype, (-1, n)),), (TensorSpec("y", "FP32", (-1,)),))


def _large(datatype: str, data: list, rows: int, **extra) -> bytes:
    n = len(data) // rows if isinstance(data, list) and data and not isinstance(data[0], list) else len(data[0])
    tensor = {"name": "x", "shape": [rows, n], "datatype": datatype, "data": data, **extra}
    return orjson.dumps({"id": "r1", "parameters": {"p": [1, 2]}, "inputs": [tensor], "outputs": [{"name": "y"}]})


@pytest.mark.parametrize(
    "datatype,values",
    [
        ("FP32", [0.25 * i - 100.5 for i in range(4000)]),
        ("FP64", [1e-300 * i for i in range(4000)]),
        ("FP16", [0.5 * (i % 100) for i in range(4000)]),
        ("INT64", [(-1) ** i * (2**62 + i) for i in range(4000)]),
        ("INT8", [i % 256 - 128 for i in range(4000)]),
        ("UINT8", [i % 256 for i in range(4000)]),
        ("UINT64", [2**64 - 1 - i for i in range(4000)]),
        ("INT32", [i for i in range(4000)]),
    ],
)
def test_parse_reads_large_numeric_data_as_the_general_path_does(datatype, values):
    raw = _large(datatype, values, rows=40)
    assert len(raw) >= v2.FAST_PARSE_BYTES
    fast = v2.parse(raw)
    assert isinstance(fast["inputs"][0]["data"], np.ndarray)  # the simdjson path was taken
    assert fast["id"] == "r1" and fast["parameters"] == {"p": [1, 2]} and fast["outputs"] == [{"name": "y"}]
    sig = _typed_sig(datatype, 100)
    got = v2.decode(fast, b"", sig, max_instances=100).inputs["x"]
    want = v2.decode(orjson.loads(raw), b"", sig, max_instances=100).inputs["x"]
    assert got.dtype == want.dtype and got.shape == want.shape == (40, 100)
    np.testing.assert_array_equal(got, want)


def test_parse_reads_nested_data_row_major_and_counts_values():
    rows = [[float(i * 100 + j) for j in range(100)] for i in range(40)]
    fast = v2.parse(_large("FP32", rows, rows=40))
    x = v2.decode(fast, b"", _typed_sig("FP32", 100), max_instances=100).inputs["x"]
    np.testing.assert_array_equal(x, np.array(rows, dtype=np.float32))
    short = v2.parse(_large("FP32", rows[:-1], rows=40))
    with pytest.raises(InvalidInput, match="needs 4000 values, got 3900"):
        v2.decode(short, b"", _typed_sig("FP32", 100), max_instances=100)


@pytest.mark.parametrize(
    "datatype,values,words",
    [
        ("FP32", [1.0] * 2000 + ["x"] + [1.0] * 1999, ["data[2000]", "expected a number", "string"]),
        ("FP32", [1.0] * 2000 + [None] + [1.0] * 1999, ["data[2000]", "null"]),
        ("INT32", [1] * 3999 + [2.5], ["data[3999]", "integer", "2.5"]),
        ("INT8", [1] * 3999 + [300], ["data[3999]", "[-128, 127]", "300"]),
        ("UINT8", [-1] + [1] * 3999, ["data[0]", "[0, 255]", "-1"]),
        ("INT64", [1] * 3999 + [2**64 - 1], ["data[3999]", "integer"]),
    ],
)
def test_parse_leaves_bad_values_to_the_general_errors(datatype, values, words):
    raw = _large(datatype, values, rows=40)
    with pytest.raises(InvalidInput) as e:
        v2.decode(v2.parse(raw), b"", _typed_sig(datatype, 100), max_instances=100)
    assert all(w in e.value.message for w in words), e.value.message
    # the parser is reused: a later body still parses
    assert isinstance(v2.parse(_large("FP32", [1.0] * 4000, rows=40))["inputs"][0]["data"], np.ndarray)


def test_parse_falls_back_for_nan_bools_and_invalid_json():
    nan = _large("FP32", [1.0] * 4000, rows=40).replace(b"1.0,", b"NaN,", 1)
    x = v2.decode(v2.parse(nan), b"", _typed_sig("FP32", 100), max_instances=100).inputs["x"]
    assert np.isnan(x[0, 0]) and x[0, 1] == 1.0
    flags = v2.parse(_large("BOOL", [True, False] * 2000, rows=40))
    assert flags["inputs"][0]["data"][:2] == [True, False]
    with pytest.raises(InvalidInput, match="invalid JSON"):
        v2.parse(_large("FP32", [1.0] * 4000, rows=40)[:-1])
    assert v2.parse(b"[" + b"1," * 5000 + b"1]") == [1] * 5001


@pytest.mark.parametrize("large", [False, True])
def test_nested_data_is_read_row_major_whatever_the_nesting(large):
    """As Triton reads it, and alike for small bodies (orjson) and large ones (simdjson)."""
    pad = [[float(i)] for i in range(3996)] if large else []
    data = [[1.0, 2.0], [3.0], [[4.0]], *pad]
    raw = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4 + len(pad)], "datatype": "FP32", "data": data}]})
    assert (len(raw) >= v2.FAST_PARSE_BYTES) == large
    sig = _typed_sig("FP32", 4 + len(pad))
    x = v2.decode(v2.parse(raw), b"", sig, max_instances=10).inputs["x"]
    assert x[0, :4].tolist() == [1.0, 2.0, 3.0, 4.0] and x.shape == (1, 4 + len(pad))
    bad = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4 + len(pad)], "datatype": "FP32",
                                    "data": [[1.0, 2.0], [3.0, "z"], *pad]}]})
    with pytest.raises(InvalidInput, match=r"data\[1\]\[1\]: expected a number"):
        v2.decode(v2.parse(bad), b"", sig, max_instances=10)
