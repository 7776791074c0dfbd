"""Nested JSON values to numpy arrays and back, with errors that name the first bad element.

The fast path hands the whole value to numpy; only when numpy refuses it (ragged lists, wrong
element types) does a slow walk find the first bad element so the message can name its path
(``instances[3][0]``) and say what was expected and what came.
"""

from __future__ import annotations

import array
import base64
import binascii
from itertools import chain
from typing import Any

import numpy as np

from modelserver.dtypes import DType
from modelserver.errors import InvalidInput, shown
from modelserver.interface import Signature, Tensors


def fmt_shape(shape: tuple[int, ...] | list[int] | None) -> str:
    return "unknown" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def fits(shape: tuple[int, ...], spec: tuple[int, ...] | None) -> bool:
    """True when ``shape`` has the spec's rank and matches every fixed (non -1) dimension."""
    if spec is None:
        return True
    return len(shape) == len(spec) and all(s == -1 or s == d for d, s in zip(shape, spec))


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _short(v: Any) -> str:
    text = shown(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _expected_leaf(dt: DType) -> str:
    if dt.is_bytes:
        return 'a string or {"b64": ...}'
    if dt.is_bool:
        return "a boolean"
    if dt.is_int:
        return "an integer"
    return "a number"


def _leaf_ok(v: Any, dt: DType) -> bool:
    if dt.is_bytes:
        return isinstance(v, (str, bytes)) or (isinstance(v, dict) and set(v) == {"b64"})
    if dt.is_bool:
        return isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))
    if not isinstance(v, (int, float)):
        return False
    return not dt.is_int or float(v).is_integer()


#: the most dimensions a tensor may have: numpy's own limit is 64; nothing served needs more than a few
MAX_RANK = 32


def _too_deep(where: str) -> InvalidInput:
    return InvalidInput(f"{where}: nested more than {MAX_RANK} levels deep; a tensor has at most {MAX_RANK} dimensions")


def nesting_depth(value: Any) -> int:
    """How deep a nested list goes along its first elements (a bound checked before any conversion)."""
    depth = 0
    while type(value) is list and value:
        value = value[0]
        depth += 1
        if depth > MAX_RANK:
            break
    return depth


def walk_shape(value: Any, dt: DType, where: str, depth: int = 0) -> tuple[int, ...]:
    """The shape of a nested list, checking every element; raises at the first bad one."""
    if isinstance(value, list):
        if depth >= MAX_RANK:
            raise _too_deep(where)
        if not value:
            return (0,)
        first = walk_shape(value[0], dt, f"{where}[0]", depth + 1)
        for i in range(1, len(value)):
            shape = walk_shape(value[i], dt, f"{where}[{i}]", depth + 1)
            if shape != first:
                raise InvalidInput(
                    f"{where}[{i}]: expected shape {fmt_shape(first)} (as {where}[0]), "
                    f"got {fmt_shape(shape)}"
                )
        return (len(value),) + first
    if not _leaf_ok(value, dt):
        raise InvalidInput(
            f"{where}: expected {_expected_leaf(dt)} ({dt.v2}), got {_type_name(value)} {_short(value)}"
        )
    if dt.is_int:
        info = np.iinfo(dt.numpy)
        if not info.min <= value <= info.max:
            raise InvalidInput(f"{where}: expected an integer in [{info.min}, {info.max}] ({dt.v2}), got {value}")
    return ()


def _path(where: str, index: tuple[int, ...]) -> str:
    return where + "".join(f"[{i}]" for i in index)


def _decode_bytes(v: Any, where: str) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    try:
        return base64.b64decode(v["b64"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise InvalidInput(f"{where}: expected base64 text in \"b64\", got {_short(v['b64'])}") from None


def _bytes_array(value: Any, dt: DType, where: str) -> np.ndarray:
    shape = walk_shape(value, dt, where)
    flat: list[bytes] = []

    def collect(v: Any, path: str) -> None:
        if isinstance(v, list):
            for i, x in enumerate(v):
                collect(x, f"{path}[{i}]")
        else:
            flat.append(_decode_bytes(v, path))

    collect(value, where)
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(shape)


def _cast(arr: np.ndarray, dt: DType, where: str) -> np.ndarray:
    kind = arr.dtype.kind
    if dt.is_bool:
        if kind == "b":
            return arr
        bad = ~np.isin(arr, (0, 1))
    elif dt.is_int:
        info = np.iinfo(dt.numpy)
        if kind == "f":
            bad = ~np.isfinite(arr) | (arr != np.floor(arr))
        else:
            bad = np.zeros(arr.shape, dtype=bool)
        if not bad.any():
            with np.errstate(invalid="ignore"):
                bad = (arr < info.min) | (arr > info.max)
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                raise InvalidInput(
                    f"{_path(where, index)}: expected an integer in [{info.min}, {info.max}] "
                    f"({dt.v2}), got {arr[index]}"
                )
    else:
        return arr.astype(dt.numpy, copy=False)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InvalidInput(
            f"{_path(where, index)}: expected {_expected_leaf(dt)} ({dt.v2}), got {arr[index].item()!r}"
        )
    return arr.astype(dt.numpy, copy=False)


def _numeric_nested(value: list[Any], as_float: bool = False) -> np.ndarray | None:
    """A rectangular nested list of numbers as an int or float array, a level at a time; else None.

    Much faster than ``np.asarray`` on deep lists (such as images sent as ``[[[[0.5], ...]]]``,
    where numpy spends most of its time on the many small innermost lists): each level's lengths
    are checked to be equal and the level is flattened by C loops, so numpy only converts one flat
    list. Anything else (ragged lists, strings, nulls, integers beyond 64 bits) returns None and
    takes the general path, which names the culprit. Strings or objects at an inner level flatten
    into non-numbers, which numpy then reports by the array's kind.

    ``as_float`` (for float inputs): the flat list becomes doubles through ``array.array``, which
    takes only numbers and skips numpy's element-type discovery (about a quarter faster).
    A small list of one or two levels (a few rows) goes to numpy whole, which is quicker there.
    """
    first = value[0] if value else None
    if len(value) <= 16 and (type(first) is not list or (len(first) <= 64 and (not first or type(first[0]) is not list))):
        try:
            small = np.array(value)
        except (TypeError, OverflowError, ValueError):  # ragged
            return None
        if value and small.dtype.kind in "iuf":
            return small
        # else strings, nulls or integers past 64 bits: the level-at-a-time path below decides
    shape = [len(value)]
    level: list[Any] = value
    try:
        while level and type(level[0]) is list:
            n = len(level[0])
            if set(map(len, level)) != {n}:
                return None
            shape.append(n)
            level = list(chain.from_iterable(level))
        if not level:
            return None
        arr = np.frombuffer(array.array("d", level), dtype=np.float64) if as_float else _integers_or_doubles(level)
    except (TypeError, OverflowError, ValueError):  # a number where a list was (ragged), or not a number
        return None
    return arr.reshape(shape)


def _integers_or_doubles(flat: list[Any]) -> np.ndarray:
    """A flat list of numbers as int64 (all integers) or float64, as numpy would read it, through
    ``array.array``: it refuses anything else with a TypeError instead of building an array of
    strings or objects the size of the list."""
    try:
        return np.frombuffer(array.array("q", flat), dtype=np.int64)
    except TypeError:  # a float among them (OverflowError, an integer past 64 bits, is the caller's)
        return np.frombuffer(array.array("d", flat), dtype=np.float64)


def try_array(value: Any, dt: DType, where: str) -> np.ndarray | None:
    """``to_array``'s quick conversion, or None where only a walk over every element could say what
    is wrong (a ragged list, a value that is not a number); what it finds without one it raises."""
    if isinstance(value, np.ndarray):  # numbers already read into an array by the body's parser
        return _cast(value, dt, where)
    if nesting_depth(value) > MAX_RANK:
        raise _too_deep(where)
    if dt.is_bytes:
        return _bytes_array(value, dt, where)
    if type(value) is list and not dt.is_bool:
        # not numpy's own reading when this refuses: numpy would read a list with a string in it
        # as an array of strings many times the list's size
        fast = _numeric_nested(value, as_float=dt.is_float)
        return None if fast is None else _cast(fast, dt, where)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        return None
    return _cast(arr, dt, where) if arr.dtype.kind in "biuf" else None


def to_array(value: Any, dt: DType, where: str) -> np.ndarray:
    """A nested list (or a scalar) as an array of ``dt``; InvalidInput names the first bad element."""
    arr = try_array(value, dt, where)
    if arr is not None:
        return arr
    walk_shape(value, dt, where)  # raises at the first bad element
    arr = np.asarray(value)  # a rectangular list of numbers with an empty level, which the quick path leaves
    if arr.dtype.kind not in "biuf":
        raise InvalidInput(f"{where}: expected {_expected_leaf(dt)} values ({dt.v2})")
    return _cast(arr, dt, where)


def bytes_to_json(value: bytes, as_b64: bool) -> Any:
    """A BYTES element for a JSON body: text when it is UTF-8 (and not asked as b64), else b64."""
    if not as_b64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(value).decode("ascii")}


def jsonable(arr: np.ndarray, *, b64: bool = False) -> Any:
    """An output array in a form the JSON encoder takes: numeric arrays as they are, strings mapped."""
    if arr.dtype.kind in "OSU":
        flat = [bytes_to_json(v if isinstance(v, bytes) else str(v).encode(), b64) for v in arr.ravel()]
        if arr.ndim == 0:
            return flat[0]
        return np.array(flat, dtype=object).reshape(arr.shape).tolist()
    if arr.ndim == 0:
        return arr.item()
    return np.ascontiguousarray(arr)


def batch_rows(tensors: Tensors) -> int:
    """Rows in a request's batch: the first dimension of its inputs (1 for scalars)."""
    return max((int(a.shape[0]) for a in tensors.values() if a.ndim), default=1)


def check_batch(tensors: Tensors, sig: Signature, where: str, max_instances: int) -> None:
    """Named inputs must agree on their batch size, and stay within the row limit."""
    sizes = {n: int(a.shape[0]) for n, a in tensors.items() if a.ndim and sig.input(n).batched}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{n!r} has {s}" for n, s in sizes.items())
        raise InvalidInput(f"{where}: mismatched batch between named inputs: {detail}")
    if sizes and max(sizes.values()) > max_instances:
        raise InvalidInput(f"{where}: at most {max_instances} rows per request, got {max(sizes.values())}")


def check_names(given: set[str], sig: Signature, where: str) -> None:
    """Exactly the signature's inputs: name the first missing or unknown one."""
    expected = set(sig.input_names)
    if given != expected:
        missing, extra = expected - given, given - expected
        what = f"missing input {sorted(missing)[0]!r}" if missing else f"unknown input {sorted(extra)[0]!r}"
        raise InvalidInput(f"{where}: {what}; the signature takes {sorted(expected)}")
