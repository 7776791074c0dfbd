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


def _has_nonfinite(obj: Any) -> bool:
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind == "f" and not bool(np.isfinite(obj).all())
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


def dumps(obj: Any) -> bytes:
    """Serialize a response; numpy arrays go straight through, non-finite floats as NaN/Infinity.

    orjson writes a non-finite float as ``null``, so only an answer with ``null`` in it is searched
    for them (and, if it has any, written again by the stdlib).
    """
    out = orjson.dumps(obj, option=_OPTS, default=_plain)
    if b"null" in out and _has_nonfinite(obj):
        return json.dumps(obj, default=_plain, separators=(",", ":")).encode()
    return out
