"""Nested JSON to arrays: the fast path, and the slow walk that names the first bad element."""

from __future__ import annotations

import numpy as np
import pytest

from modelserver import dtypes
from modelserver.codecs.tensors import fits, jsonable, to_array, walk_shape
from modelserver.errors import InvalidInput

FP32, INT8, INT64, BOOL, BYTES = (dtypes.BY_V2[n] for n in ("FP32", "INT8", "INT64", "BOOL", "BYTES"))


@pytest.mark.parametrize(
    "value,dt,shape,dtype",
    [
        ([[1, 2], [3, 4]], FP32, (2, 2), np.float32),
        ([1.0, 2.5], dtypes.BY_V2["FP64"], (2,), np.float64),
        (3, INT64, (), np.int64),
        ([1.0, 2.0], INT64, (2,), np.int64),  # integral floats are integers
        ([True, False], BOOL, (2,), np.bool_),
        ([0, 1], BOOL, (2,), np.bool_),
        ([[1, 2]], dtypes.BY_V2["FP16"], (1, 2), np.float16),
        ([255, 0], dtypes.BY_V2["UINT8"], (2,), np.uint8),
        ([], FP32, (0,), np.float32),
        ([1, True], FP32, (2,), np.float32),  # booleans count as 0 and 1, as in numpy
        ([[1, 2**70]], FP32, (1, 2), np.float32),  # any JSON number fits a float input
    ],
)
def test_good_values(value, dt, shape, dtype):
    arr = to_array(value, dt, "x")
    assert arr.shape == shape and arr.dtype == dtype


def test_bytes_values_and_b64():
    arr = to_array([["a", {"b64": "aGk="}]], BYTES, "x")
    assert arr.shape == (1, 2) and arr.tolist() == [[b"a", b"hi"]]


@pytest.mark.parametrize(
    "value,dt,words",
    [
        ([[1, 2], [3]], FP32, ["x[1]", "[2]", "[1]"]),
        ([[1, 2], [3, "a"]], FP32, ["x[1][1]", "number", "string 'a'"]),
        ([[1, 2], [3, None]], FP32, ["x[1][1]", "null"]),
        ([[1, 2], [3, [4]]], FP32, ["x[1]"]),
        ([1, 2.5], INT64, ["x[1]", "integer", "2.5"]),
        ([1, 300], INT8, ["x[1]", "[-128, 127]", "300"]),
        ([1, 2**70], INT64, ["x[1]", "integer in", str(2**70)]),
        ([0, 2], BOOL, ["x[1]", "boolean"]),
        ([1, 2], BYTES, ["x[0]", "string"]),
        ([{"b64": "!!"}], BYTES, ["x[0]", "base64"]),
        ({"a": 1}, FP32, ["x", "object"]),
    ],
)
def test_bad_values_name_the_first_bad_element(value, dt, words):
    with pytest.raises(InvalidInput) as e:
        to_array(value, dt, "x")
    for w in words:
        assert w in e.value.message, e.value.message


@pytest.mark.parametrize(
    "shape,spec,ok",
    [
        ((2, 4), (-1, 4), True),
        ((2, 3), (-1, 4), False),
        ((4,), (-1, 4), False),
        ((1, 2, 3), None, True),
        ((), (), True),
        ((5, 5), (-1, -1), True),
    ],
)
def test_fits(shape, spec, ok):
    assert fits(shape, spec) is ok


def test_walk_shape():
    assert walk_shape([[1, 2, 3], [4, 5, 6]], FP32, "x") == (2, 3)
    assert walk_shape(7, FP32, "x") == ()


def test_jsonable():
    assert jsonable(np.float32(1.5) * np.ones(())) == 1.5
    assert jsonable(np.array([b"ok", b"\xff"], dtype=object)) == ["ok", {"b64": "/w=="}]
    assert jsonable(np.array([b"ok"], dtype=object), b64=True) == [{"b64": "b2s="}]


@pytest.mark.parametrize(
    "value",
    [
        [[[[0.5], [1.5]], [[2.0], [3.25]]]] * 3,  # images with one channel
        [[1, 2], [3, 4]],
        [[1, 2.5], [3, 4]],
        [[1, True], [0, 4]],  # booleans among numbers count as numbers, as np.asarray has it
        [1.0, -2.0, 1e3],
    ],
)
def test_deep_numeric_lists_convert_exactly_as_numpy_does(value):
    for name in ("FP32", "FP64", "INT64"):
        dt = dtypes.from_v2(name)
        try:
            expected = np.asarray(value).astype(dt.numpy)
        except (ValueError, OverflowError):
            continue
        if dt.is_int and not np.array_equal(np.asarray(value), expected):
            continue  # not integers: the general path rejects it with its own message
        got = to_array(value, dt, "instances")
        assert got.dtype == dt.numpy and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "value, words",
    [
        ([[[1.0], [2.0]], [[3.0], [4.0, 5.0]]], "instances[1][1]"),  # ragged at the innermost level
        ([[1.0, 2.0], [3.0, 4.0, 5.0], [6.0]], "instances[1]"),  # ragged, same total count
        ([[1.0, 2.0], [3.0, "4"]], "instances[1][1]"),
        ([[1.0, 2.0], [3.0, None]], "instances[1][1]"),
        ([[1.0, 2.0], "ab"], "instances[1]"),
        ([[1.0, 2.0], 3.0], "instances[1]"),
    ],
)
def test_bad_deep_lists_still_name_the_first_bad_element(value, words):
    with pytest.raises(InvalidInput, match=words.replace("[", r"\[").replace("]", r"\]")):
        to_array(value, dtypes.from_v2("FP32"), "instances")
