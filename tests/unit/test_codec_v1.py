"""V1 rank rules and formats, table-driven, against hand-made signatures."""

from __future__ import annotations

import numpy as np
import pytest

from modelserver.codecs import bodies, v1
from modelserver.errors import InvalidInput
from modelserver.interface import Signature, TensorSpec

ONE = Signature("serving_default", (TensorSpec("x", "FP32", (-1, 2)),), (TensorSpec("y", "FP32", (-1,)),))
TWO = Signature(
    "serving_default",
    (TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "INT64", (-1,))),
    (TensorSpec("y", "FP32", (-1,)), TensorSpec("z", "BYTES", (-1,))),
)
SCALAR_IN = Signature("s", (TensorSpec("x", "FP32", ()),), (TensorSpec("y", "FP32", ()),))


def decode(body, sig=ONE, max_instances=100):
    return v1.decode(body, sig, max_instances=max_instances)


@pytest.mark.parametrize(
    "body,whole,shapes",
    [
        ({"instances": [[5.4, 3.2], [1.0, 2.0]]}, False, [(2, 2)]),  # TF Serving rows
        ({"instances": [[[5.4, 3.2]]]}, True, [(1, 2)]),  # Posit: one whole 1x2 tensor
        ({"instances": [[[5.4, 3.2]], [[1, 2], [3, 4]]]}, True, [(1, 2), (2, 2)]),  # whole tensors may differ in rows
        ({"instances": [{"x": [1, 2]}]}, False, [(1, 2)]),
        ({"inputs": [[1, 2], [3, 4], [5, 6]]}, False, [(3, 2)]),
        ({"inputs": {"x": [[1, 2]]}}, False, [(1, 2)]),
    ],
)
def test_decode_shapes(body, whole, shapes):
    req = decode(body)
    assert req.whole is whole
    assert [b["x"].shape for b in req.batches] == shapes
    assert all(b["x"].dtype == np.float32 for b in req.batches)


@pytest.mark.parametrize(
    "body,words",
    [
        ({"instances": [1.0, 2.0]}, ["instances[0]", "shape [2]", "got shape []"]),
        ({"instances": [[1, 2], [1, 2, 3]]}, ["instances[1]", "[3]"]),
        ({"instances": [[1, 2], [[1, 2]]]}, ["instances[1]", "mixed ranks", "[2]", "[1, 2]"]),
        ({"instances": [[[[1, 2]]]]}, ["instances[0]", "[1, 1, 2]"]),
        ({"instances": "x"}, ["instances", "list"]),
        ({"instances": [[1, 2]] * 101}, ["at most 100"]),
        ({"inputs": [[1, 2, 3]]}, ["inputs", "[-1, 2]", "[1, 3]"]),
        ({"inputs": [1, 2]}, ["inputs", "[-1, 2]", "[2]"]),
        ({}, ["instances", "inputs"]),
        ({"instances": [[1, 2]], "signature_name": 3}, []),
    ],
)
def test_decode_errors(body, words):
    if "signature_name" in body:
        with pytest.raises(InvalidInput):
            bodies.signature_name(body)
        return
    with pytest.raises(InvalidInput) as e:
        decode(body)
    for w in words:
        assert w in e.value.message, e.value.message


def test_named_inputs_rows_and_errors():
    req = decode({"instances": [{"a": [1, 2], "b": 3}, {"a": [3, 4], "b": 5}]}, TWO)
    assert req.named and req.batches[0]["a"].shape == (2, 2) and req.batches[0]["b"].tolist() == [3, 5]
    with pytest.raises(InvalidInput, match=r"instances\[1\]: missing input 'b'"):
        decode({"instances": [{"a": [1, 2], "b": 3}, {"a": [3, 4]}]}, TWO)
    with pytest.raises(InvalidInput, match=r"instances\[0\].a\[1\]"):
        decode({"instances": [{"a": [1, "q"], "b": 3}]}, TWO)
    with pytest.raises(InvalidInput, match="mismatched batch"):
        decode({"inputs": {"a": [[1, 2]], "b": [1, 2]}}, TWO)
    with pytest.raises(InvalidInput, match="expected an object"):
        decode({"inputs": [[1, 2]]}, TWO)


def test_scalar_input_instances_are_whole_tensors():
    req = decode({"instances": [1.0, 2.0]}, SCALAR_IN)
    assert req.whole and [b["x"].shape for b in req.batches] == [(), ()]


def test_encode_rows_columns_and_whole():
    rows = decode({"instances": [[1, 2], [3, 4]]})
    out = {"y": np.array([1.5, 2.5], np.float32)}
    body = v1.encode(rows, [out])
    assert body["predictions"].tolist() == [1.5, 2.5]
    cols = decode({"inputs": [[1, 2]]})
    assert v1.encode(cols, [{"y": np.array([7.0])}])["outputs"].tolist() == [7.0]
    whole = decode({"instances": [[[1, 2]], [[3, 4], [5, 6]]]})
    got = v1.encode(whole, [{"y": np.array([1.0])}, {"y": np.array([2.0, 3.0])}])
    assert [p.tolist() for p in got["predictions"]] == [[1.0], [2.0, 3.0]]


def test_encode_named_outputs_per_row_and_scalar():
    rows = decode({"instances": [{"a": [1, 2], "b": 3}, {"a": [3, 4], "b": 5}]}, TWO)
    body = v1.encode(rows, [{"y": np.array([1.0, 2.0]), "z": np.array([b"p", b"q"], dtype=object)}])
    assert [(p["y"], p["z"]) for p in body["predictions"]] == [(1.0, "p"), (2.0, "q")]
    scalar = v1.encode(decode({"instances": [[1, 2]]}), [{"y": np.array(4.5)}])
    assert scalar == {"predictions": [4.5]}
    with pytest.raises(InvalidInput, match="columnar"):
        v1.encode(rows, [{"y": np.array([1.0]), "z": np.array([b"p", b"q"], dtype=object)}])


# -- long lists: the slow path goes a chunk of instances at a time -------------------------------------
N = 2 * v1.CHUNK + 7
FREE = Signature("f", (TensorSpec("x", "FP32", (-1, -1)),), (TensorSpec("y", "FP32", (-1,)),))


@pytest.mark.parametrize(
    "instances,sig,error",
    [
        ([[1.0, 2.0]] * N + [[1.0]], ONE, f"instances[{N}]: expected shape [2]"),
        ([[1.0, 2.0]] * (v1.CHUNK + 5) + [[1.0, "a"]] + [[1.0, 2.0]] * 9, ONE,
         f"instances[{v1.CHUNK + 5}][1]: expected a number (FP32), got string 'a'"),
        ([[1.0, 2.0]] * (v1.CHUNK + 5) + [[1.0, None]], ONE, f"instances[{v1.CHUNK + 5}][1]: expected a number"),
        ([[1.0, 2.0]] * (v1.CHUNK * 2) + [[[1.0, 2.0]]], ONE, f"instances[{2 * v1.CHUNK}]: mixed ranks"),
        ([[[1.0, 2.0]]] * (v1.CHUNK + 1) + [[1.0, 2.0]], ONE, f"instances[{v1.CHUNK + 1}]: mixed ranks"),
        ([[1.0, 2.0]] * v1.CHUNK + [[1.0, 2.0, 3.0]] * v1.CHUNK, FREE, f"instances[{v1.CHUNK}]: expected shape [2]"),
    ],
)
def test_a_long_list_names_its_first_bad_instance(instances, sig, error):
    with pytest.raises(InvalidInput) as e:
        decode({"instances": instances}, sig, max_instances=10**6)
    assert str(e.value).startswith(error), str(e.value)


def test_a_long_list_of_whole_tensors_of_several_shapes_is_served():
    instances = [[[1.0, 2.0]]] * v1.CHUNK + [[[1.0, 2.0], [3.0, 4.0]]] * 3 + [[[5.0, 6.0]]] * v1.CHUNK
    got = decode({"instances": instances}, max_instances=10**6)
    assert got.whole and len(got.batches) == len(instances)
    assert [b["x"].shape for b in got.batches[v1.CHUNK - 1:v1.CHUNK + 4]] == [(1, 2), (2, 2), (2, 2), (2, 2), (1, 2)]
    assert got.batches[-1]["x"].tolist() == [[5.0, 6.0]]


@pytest.mark.parametrize("last", [[1.0], [1.0, "a"], [[1.0, 2.0]]])
def test_a_refused_body_leaves_no_reference_cycle_holding_its_values(last):
    """Refusing a large body frees its values at once: the server does not need a full collection
    (which holds the GIL for tens of milliseconds) to get that memory back."""
    import gc

    import orjson

    from modelserver.codecs import fastparse

    raw = orjson.dumps({"instances": [[0.5, 1.5]] * 20_000 + [last]})
    gc.collect()
    gc.disable()
    try:
        def refuse() -> None:
            body = fastparse.loads(raw)
            v1.decode(body, ONE, max_instances=10**6)

        with pytest.raises(InvalidInput):
            refuse()
        assert gc.collect() < 100  # the values are 60,000 objects: they were freed by their counts
    finally:
        gc.enable()
