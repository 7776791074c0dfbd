"""Large bodies read with simdjson: the same requests as the general path, with tensors as arrays."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import simdjson

from modelserver.codecs import fastparse, v1, v2
from modelserver.errors import InvalidInput
from modelserver.interface import Signature, TensorSpec


# -- V2: each input's data as a flat array ---------------------------------------------------------
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
    assert len(raw) >= fastparse.FAST_PARSE_BYTES
    fast = fastparse.loads(raw)
    assert isinstance(fast["inputs"][0]["data"], np.ndarray)  # the simdjson path was taken
    assert fast["id"] == "r1" and fast["parameters"] == {"p": [1, 2]} and fast["outputs"] == [{"name": "y"}]
    sig = _typed_sig(datatype, 100)
    got = v2.decode(fast, b"", sig, max_instances=100).inputs["x"]
    want = v2.decode(orjson.loads(raw), b"", sig, max_instances=100).inputs["x"]
    assert got.dtype == want.dtype and got.shape == want.shape == (40, 100)
    np.testing.assert_array_equal(got, want)


def test_parse_reads_nested_data_row_major_and_counts_values():
    rows = [[float(i * 100 + j) for j in range(100)] for i in range(40)]
    fast = fastparse.loads(_large("FP32", rows, rows=40))
    x = v2.decode(fast, b"", _typed_sig("FP32", 100), max_instances=100).inputs["x"]
    np.testing.assert_array_equal(x, np.array(rows, dtype=np.float32))
    short = fastparse.loads(_large("FP32", rows[:-1], rows=40))
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
        v2.decode(fastparse.loads(raw), b"", _typed_sig(datatype, 100), max_instances=100)
    assert all(w in e.value.message for w in words), e.value.message
    # the parser is reused: a later body still parses
    assert isinstance(fastparse.loads(_large("FP32", [1.0] * 4000, rows=40))["inputs"][0]["data"], np.ndarray)


def test_parse_falls_back_for_nan_bools_and_invalid_json():
    nan = _large("FP32", [1.0] * 4000, rows=40).replace(b"1.0,", b"NaN,", 1)
    x = v2.decode(fastparse.loads(nan), b"", _typed_sig("FP32", 100), max_instances=100).inputs["x"]
    assert np.isnan(x[0, 0]) and x[0, 1] == 1.0
    flags = fastparse.loads(_large("BOOL", [True, False] * 2000, rows=40))
    assert flags["inputs"][0]["data"][:2] == [True, False]
    with pytest.raises(InvalidInput, match="invalid JSON"):
        fastparse.loads(_large("FP32", [1.0] * 4000, rows=40)[:-1])
    assert fastparse.loads(b"[" + b"1," * 5000 + b"1]") == [1] * 5001


@pytest.mark.parametrize("large", [False, True])
def test_nested_data_is_read_row_major_whatever_the_nesting(large):
    """As Triton reads it, and alike for small bodies (orjson) and large ones (simdjson)."""
    pad = [[float(i)] for i in range(3996)] if large else []
    data = [[1.0, 2.0], [3.0], [[4.0]], *pad]
    raw = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4 + len(pad)], "datatype": "FP32", "data": data}]})
    assert (len(raw) >= fastparse.FAST_PARSE_BYTES) == large
    sig = _typed_sig("FP32", 4 + len(pad))
    x = v2.decode(fastparse.loads(raw), b"", sig, max_instances=10).inputs["x"]
    assert x[0, :4].tolist() == [1.0, 2.0, 3.0, 4.0] and x.shape == (1, 4 + len(pad))
    bad = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4 + len(pad)], "datatype": "FP32",
                                    "data": [[1.0, 2.0], [3.0, "z"], *pad]}]})
    with pytest.raises(InvalidInput, match=r"data\[1\]\[1\]: expected a number"):
        v2.decode(fastparse.loads(bad), b"", sig, max_instances=10)


# -- V1: rectangular instances and inputs as shaped arrays ------------------------------------------
IMG = Signature("serving_default", (TensorSpec("x", "FP32", (-1, 10, 10, 1)),), (TensorSpec("y", "FP32", (-1,)),))
INTS = Signature("serving_default", (TensorSpec("x", "INT64", (-1, 100)),), (TensorSpec("y", "FP32", (-1,)),))
TWO = Signature(
    "serving_default",
    (TensorSpec("a", "FP32", (-1, 50)), TensorSpec("b", "FP64", (-1, 50))),
    (TensorSpec("y", "FP32", (-1,)),),
)
IMAGES = np.round(np.random.default_rng(0).random((40, 10, 10, 1)) * 2 - 1, 4)


def _v1_same_as_general(raw: bytes, sig: Signature) -> object:
    """What the fast path read, after checking it decodes exactly as the general path does."""
    assert len(raw) >= fastparse.FAST_PARSE_BYTES
    fast = fastparse.loads(raw)
    got = v1.decode(fast, sig, max_instances=1000)
    want = v1.decode(orjson.loads(raw), sig, max_instances=1000)
    assert (got.fmt, got.whole, got.named) == (want.fmt, want.whole, want.named)
    for g, w in zip(got.batches, want.batches, strict=True):
        assert g.keys() == w.keys()
        for name in g:
            assert g[name].dtype == w[name].dtype and g[name].shape == w[name].shape
            np.testing.assert_array_equal(g[name], w[name])
    return fast


def test_v1_instances_come_back_shaped():
    fast = _v1_same_as_general(orjson.dumps({"instances": IMAGES.tolist()}), IMG)
    assert isinstance(fast["instances"], np.ndarray) and fast["instances"].shape == (40, 10, 10, 1)
    ints = np.arange(4000).reshape(40, 100) - 2000
    fast = _v1_same_as_general(orjson.dumps({"signature_name": "serving_default", "instances": ints.tolist()}), INTS)
    assert fast["instances"].dtype == np.int64 and fast["signature_name"] == "serving_default"
    # whole tensors (one more dimension) as in the general path
    fast = _v1_same_as_general(orjson.dumps({"instances": IMAGES.reshape(4, 10, 10, 10, 1).tolist()}), IMG)
    assert isinstance(fast["instances"], np.ndarray)


def test_v1_columns_come_back_shaped():
    body = {"inputs": {"a": IMAGES.reshape(80, 50)[:40].tolist(), "b": IMAGES.reshape(80, 50)[40:].tolist()}}
    fast = _v1_same_as_general(orjson.dumps(body), TWO)
    assert all(isinstance(a, np.ndarray) and a.shape == (40, 50) for a in fast["inputs"].values())
    fast = _v1_same_as_general(orjson.dumps({"inputs": IMAGES.tolist()}), IMG)
    assert fast["inputs"].shape == (40, 10, 10, 1)


def test_v1_outline_follows_any_spacing_and_key_order():
    pretty = b'{\n  "instances" :\n' + orjson.dumps(IMAGES.tolist()).replace(b",", b", ") + b',\n "signature_name": "serving_default"}\n'
    assert isinstance(_v1_same_as_general(pretty, IMG)["instances"], np.ndarray)


@pytest.mark.parametrize(
    "instances,where",
    [
        (lambda x: [*x[:5], x[5][:9], *x[6:]], "instances[5]"),  # a missing row, fewer numbers
        (lambda x: [*x[:5], [*x[5][:9], [[0.5, 0.5], *x[5][9][2:]]], *x[6:]], "instances[5]"),  # moved: same count
        (lambda x: [*x[:5], [*x[5][:9], [[0.5, 0.5], [], *x[5][9][2:]]], *x[6:]], "instances[5]"),  # ragged, same count
        (lambda x: [*x[:5], [[1.0] * 10] * 10, *x[6:]], "instances[5]"),  # one rank less
        (lambda x: [*x[:5], "text", *x[6:]], "instances[5]"),
        (lambda x: [*x[:5], True, *x[6:]], "instances[5]"),
    ],
)
def test_v1_anything_not_rectangular_numbers_takes_the_general_path(instances, where):
    raw = orjson.dumps({"instances": instances(IMAGES.tolist())})
    assert len(raw) >= fastparse.FAST_PARSE_BYTES
    parsed = fastparse.loads(raw)
    assert isinstance(parsed["instances"], list)
    with pytest.raises(InvalidInput, match=rf"^{where.replace('[', '.').replace(']', '.')}"):
        v1.decode(parsed, IMG, max_instances=1000)


def test_v1_bodies_the_outline_cannot_vouch_for_take_the_general_path():
    rows = IMAGES.tolist()
    for raw in (
        b'{"\\u0069nstances": ' + orjson.dumps(rows) + b"}",  # an escaped key
        b'{"instances": [[1]], "instances": ' + orjson.dumps(rows) + b"}",  # a repeated key
        orjson.dumps({"instances": [{"x": r} for r in rows]}),  # named instances
    ):
        parsed = fastparse.loads(raw)
        assert parsed == orjson.loads(raw)
        v1.decode(parsed, IMG, max_instances=1000)  # and they decode
    big = orjson.dumps({"instances": [[2**63 + i] * 100 for i in range(40)]})
    assert fastparse.loads(big) == orjson.loads(big)


def test_single_tensor_body():
    raw = orjson.dumps({"name": "x", "shape": [40, 10, 10, 1], "datatype": "FP32", "data": IMAGES.ravel().tolist()})
    fast = fastparse.loads(raw)
    assert isinstance(fast["data"], np.ndarray) and v2.is_single_tensor(fast)
    got = v2.decode_single(fast, IMG, max_instances=100).inputs["x"]
    np.testing.assert_array_equal(got, IMAGES.astype(np.float32))


def _plainly(value):
    """A parsed body with arrays as lists, to compare the two parsers' readings."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plainly(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plainly(v) for v in value]
    return value


PAD = " " * fastparse.FAST_PARSE_BYTES


@pytest.mark.parametrize(
    "body",
    [
        '{"inputs":[{"name":"x","datatype":"FP32","datatype":"INT32","shape":[2],"data":[1,2]}]%s}',
        '{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2],"data":[3,4]}]%s}',
        '{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}],"inputs":[{"name":"y","datatype":"FP32","shape":[1],"data":[5]}]%s}',
        '{"instances":[[1,2]],"instances":[[3,4,5]]%s}',
        '{"inputs":{"a":[1,2],"a":[3]}%s}',
        '{"name":"x","datatype":"FP32","shape":[2],"data":[1,2],"data":[7,8]%s}',
        '{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}],"a\\u0000b":1%s}',
        '{"inputs":[{"name":"x","data\\u0000":[1],"datatype":"FP32","shape":[2],"data":[1,2]}]%s}',
        '{"instances":[[1,2]],"a\\u0000":1%s}',
        '{"inputs":{"a\\u0000":[1,2]}%s}',
    ],
)
def test_duplicate_and_nul_keys_read_the_same_at_every_size(body):
    """One reading for every body size: the last of duplicate keys counts (as orjson and the stdlib
    read it), and a NUL in a key is a character like any other."""
    small, large = (body % "").encode(), (body % PAD).encode()
    assert _plainly(fastparse.loads(large)) == _plainly(fastparse.loads(small)) == orjson.loads(small)


@pytest.mark.parametrize(
    "value",
    [
        {"instances": [[0.5 * i, i, -i, 1e-7 * i] for i in range(20000)] + [[1, 2, 3]]},
        {"instances": [{"a": [i, i + 1], "b": "x\u00e9\u0000" * (i % 3), "c": None, "d": True} for i in range(6000)]},
        {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [90000], "data": ["t"] * 89999 + [7]}],
         "parameters": {"nested": {"deep": [[[]]] * 300}}},
        [1] * 140000,
    ],
)
def test_large_bodies_off_the_fast_path_read_as_orjson_reads_them(value):
    body = orjson.dumps(value)
    assert len(body) >= fastparse.STEPWISE_BYTES
    assert fastparse._stepwise(simdjson.Parser().parse(body)) == orjson.loads(body)
    got = fastparse.loads(body)
    assert _plainly(got) == orjson.loads(body)

