"""The paced reader of large bodies gives what ``json.loads`` gives: values, and errors with their
positions, for bodies that take each of its paths (string-free tensors cut into pieces, arrays read
element by element, objects walked into), plus a lone surrogate escape refused."""

from __future__ import annotations

import json
import math
import random

import orjson
import pytest

from modelserver.codecs import jsonio, pacedjson
from modelserver.errors import InvalidInput

ROWS = orjson.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 40000})


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.random()
    if depth > 3 or kind < 0.4:
        return rng.choice([1, -2.5, 1e-7, None, True, False, "s", "a]b,c\"[", "\u00e9\u20ac", float("nan"),
                           float("inf"), float("-inf")])
    if kind < 0.7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    return {rng.choice("abc\u00e9"): random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


VALUES = [
    ROWS[:-6] + b"NaN]]}",
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": ['
    + b",".join([b"1.5", b"NaN", b"-Infinity", b"[1, [2]]"] * 30000)
    + b']}, {"name": "s", "data": ["a]", "b,", "c\\"["]}], "parameters": {"a": [1, [2, "]"]]}}',
    b'{"instances": [' + b",".join([b'{"a": [1, 2, NaN], "b": "x]y"}'] * 20000) + b'], "instances": [1, 2]}',
    b"  [" + b",".join([b"[[1, 2], [3, Infinity]]"] * 30000) + b"] ",
    '{"k\u00e9": ['.encode() + b",".join([b"[1,2]"] * 50000) + '], "s": "\u00e9]\u20ac"}'.encode(),
    b'{"a": []   , "b": [[], [[]], {}], "c": {}, "d": "\\ud83d\\ude00"}',
    *(json.dumps([random_value(random.Random(seed)) for _ in range(3000)]).encode() for seed in range(5)),
]


@pytest.mark.parametrize("body", VALUES)
def test_values_are_what_the_standard_library_reads(body):
    assert same(pacedjson.loads(body), json.loads(body))


INVALID = [
    ROWS[:-4] + b"4]]",  # cut short
    ROWS.replace(b"0.2]", b"0.2 x]", 1),
    ROWS.replace(b"0.2]", b"0.2,]", 1),
    ROWS[: len(ROWS) // 2] + b"?" + ROWS[len(ROWS) // 2 + 1:],  # deep inside a piece
    ROWS + b"x",
    b'{"a" [1]}',
    b'{"a": [1, 2}',
    b"[" * 3000 + b"]" * 3000,
]


@pytest.mark.parametrize("body", INVALID)
def test_errors_are_the_standard_library_errors_at_the_same_place(body):
    with pytest.raises(Exception) as expected:
        json.loads(body)
    with pytest.raises(type(expected.value)) as got:
        pacedjson.loads(body)
    assert str(got.value) == str(expected.value)


def test_a_lone_surrogate_escape_is_refused_as_orjson_refuses_it():
    body = b'{"a": [' + b",".join([b'"x"'] * 100000) + b'], "b": "\\ud800"}'
    with pytest.raises(InvalidInput, match="lone surrogate"):
        jsonio.loads_large(body)


def test_large_bodies_that_simdjson_refuses_are_read_in_pieces_with_jsonio_s_wording():
    with pytest.raises(InvalidInput, match="got invalid JSON: Expecting ',' delimiter: line 1 column"):
        jsonio.loads_large(ROWS[:-4] + b"4]]")
    with pytest.raises(InvalidInput, match="nested at most 1024"):
        jsonio.loads_large(b"[" * 300000 + b"]" * 300000)
    with pytest.raises(InvalidInput, match="invalid UTF-8"):
        jsonio.loads_large(b'["\xff"' + b", 1" * 100000 + b"]")
    body = jsonio.loads_large(ROWS[:-6] + b"NaN]]}")
    assert math.isnan(body["instances"][-1][-1]) and len(body["instances"]) == 40000
