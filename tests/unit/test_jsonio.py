"""JSON in and out: orjson's speed with TensorFlow Serving's NaN and Infinity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelserver.codecs import jsonio
from modelserver.errors import InvalidInput


@pytest.mark.parametrize(
    "obj,text",
    [
        ({"predictions": np.array([[1.5, 2.0]], dtype=np.float32)}, '{"predictions":[[1.5,2.0]]}'),
        ({"predictions": np.array([np.nan, np.inf, -np.inf, 1.0])}, '{"predictions":[NaN,Infinity,-Infinity,1.0]}'),
        ({"a": [float("nan")], "b": None}, '{"a":[NaN],"b":null}'),
        ({"a": None, "b": "null", "c": np.float32(2.5)}, '{"a":null,"b":"null","c":2.5}'),
        ({"n": [np.int64(3), np.arange(2)]}, '{"n":[3,[0,1]]}'),
    ],
)
def test_dumps(obj, text):
    assert jsonio.dumps(obj).decode() == text


def test_loads_takes_nan_and_words_errors():
    assert jsonio.loads(b'{"x": [NaN, 1]}')["x"][1] == 1
    assert json.dumps(jsonio.loads(b'{"x": [-Infinity]}')) == '{"x": [-Infinity]}'
    for body, words in ((b"", "empty"), (b'{"x": ', "invalid JSON")):
        with pytest.raises(InvalidInput, match=words):
            jsonio.loads(body)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
@pytest.mark.parametrize("shape", [(100_000, 3), (3, 70_000), (200_000,), (2, 50_000, 2), (1, 100_000)])
def test_large_arrays_are_written_in_pieces_that_join_into_one_call_s_writing(shape, dtype):
    import json

    import orjson

    arr = (np.random.default_rng(0).random(shape) * 10).astype(dtype)
    answer = {"predictions": arr, "small": arr.ravel()[:3]}
    assert jsonio.dumps(answer) == orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if dtype in (np.float32, np.float64):
        arr.ravel()[[5, -1]] = [np.nan, -np.inf]
        expected = (b'{"predictions":' + json.dumps(arr.tolist(), separators=(",", ":")).encode()
                    + b',"small":' + orjson.dumps(answer["small"], option=orjson.OPT_SERIALIZE_NUMPY) + b"}")
        assert jsonio.dumps(answer) == expected
