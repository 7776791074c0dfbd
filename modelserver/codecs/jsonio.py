"""JSON in and out: orjson for speed, with the stdlib as the fallback for NaN and Infinity.

TensorFlow Serving accepts and emits ``NaN``/``Infinity``, which strict JSON (and orjson) does not;
bodies that carry them take the slower stdlib path, everything else stays on orjson. Either way a
string is valid Unicode (a lone surrogate escape is a 400), so text reaching a tokenizer or a
BYTES tensor always encodes as UTF-8. Duplicate keys: the last one counts, at every body size.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from modelserver.codecs import pacedjson, pacing
from modelserver.errors import InvalidInput

_OPTS = orjson.OPT_SERIALIZE_NUMPY
#: how deep a body may nest (orjson's own limit, kept for the fallback parser too)
MAX_DEPTH = 1024


def loads(body: bytes) -> Any:
    """Parse a request body; a clear 400 when it is not JSON."""
    if not body:
        raise InvalidInput("expected a JSON body, got an empty one")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as fast_error:
        if "depth limit" in str(fast_error) or "recursion" in str(fast_error).lower():  # orjson stops at 1024 levels
            raise InvalidInput(f"expected a JSON body nested at most {MAX_DEPTH} levels deep: {fast_error}") from None
        try:
            value = json.loads(body)  # accepts NaN, Infinity, -Infinity
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidInput(f"expected a JSON body, got invalid JSON: {fast_error}") from None
        try:  # the stdlib also lets a lone surrogate escape ("\ud800") through, which is not text
            orjson.dumps(value)
        except orjson.JSONEncodeError as e:
            where = fast_error if "surrogate" in str(fast_error) else e
            raise InvalidInput(f"expected a JSON body of valid Unicode text, got a lone surrogate escape: {where}") from None
        return value


def loads_large(body: bytes) -> Any:
    """``loads`` for a large body that simdjson did not take (``NaN``, a key twice, invalid JSON),
    read a piece at a time (``pacedjson``: in one call, orjson or the standard library would hold
    the GIL for seconds at ten megabytes); the same values, and the same kinds of 400."""
    try:
        return pacedjson.loads(body)
    except RecursionError:
        raise InvalidInput(f"expected a JSON body nested at most {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as e:
        raise InvalidInput(f"expected a JSON body, got invalid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise InvalidInput(f"expected a JSON body of UTF-8 text, got invalid UTF-8: {e}") from None
    except UnicodeEncodeError as e:
        raise InvalidInput(f"expected a JSON body of valid Unicode text, got a lone surrogate escape: {e}") from None


def _has_nonfinite(obj: Any) -> bool:
    """Whether ``obj`` holds a NaN or an infinity, besides in the arrays written in pieces."""
    if isinstance(obj, np.ndarray):
        return not _in_pieces(obj) and obj.dtype.kind == "f" and not bool(np.isfinite(obj).all())
    if isinstance(obj, float):
        return obj != obj or obj in (float("inf"), float("-inf"))
    if isinstance(obj, dict):
        return any(_has_nonfinite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_nonfinite(v) for v in obj)
    return False


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _stdlib(value: Any) -> bytes:
    """The standard library's writing (NaN and Infinity as such, numbers as Python prints them)."""
    return json.dumps(value, default=_plain, separators=(",", ":")).encode()


#: arrays of at least twice this many numbers are written a piece of about this many at a time
PIECE_VALUES = 32768


def _in_pieces(arr: np.ndarray) -> bool:
    return arr.size >= 2 * PIECE_VALUES and arr.ndim > 0 and arr.dtype.kind in "biuf"


def _pieces(obj: Any) -> Any:
    """``obj`` with each large array replaced by its JSON written in pieces of rows (orjson writes
    twenty megabytes of numbers in one call that holds the GIL for 200 ms), other threads free to
    run between them; joined, the pieces are what one call would write for the whole array (the
    standard library's, for an array with a NaN or an infinity in it)."""
    if isinstance(obj, np.ndarray):
        if not _in_pieces(obj):
            return obj
        finite = obj.dtype.kind != "f" or bool(np.isfinite(obj).all())
        # the standard library writes floats about ten times slower than orjson
        rows = max(1, (PIECE_VALUES if finite else PIECE_VALUES // 8) * obj.shape[0] // obj.size)
        parts = []
        for start in range(0, obj.shape[0], rows):
            pacing.let_others_run()
            piece = np.ascontiguousarray(obj[start:start + rows])
            parts.append((orjson.dumps(piece, option=_OPTS) if finite else _stdlib(piece))[1:-1])
        return orjson.Fragment(b"[" + b",".join(parts) + b"]")
    if isinstance(obj, dict):
        return {k: _pieces(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_pieces(v) for v in obj]
    return obj


def dumps(obj: Any) -> bytes:
    """Serialize a response; numpy arrays go straight through, non-finite floats as NaN/Infinity.

    orjson writes a non-finite float as ``null``, so only an answer with ``null`` in it is searched
    for them (and, if it has any outside the arrays written in pieces, written again by the
    standard library).
    """
    out = orjson.dumps(_pieces(obj), option=_OPTS, default=_plain)
    if b"null" in out and _has_nonfinite(obj):
        return _stdlib(obj)
    return out
