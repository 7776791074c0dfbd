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
