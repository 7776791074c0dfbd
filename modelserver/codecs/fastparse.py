"""Large inference bodies read with simdjson: lists of numbers go straight into numpy arrays.

``orjson`` makes a Python float for every number of a 32-image body and the codecs then turn those
into an array: about 2.5 ms on the IO loop for 25088 values. simdjson reads the same numbers into a
buffer of doubles (or 64-bit integers) in C, several times faster. ``loads`` returns what
``jsonio.loads`` would, except that the tensor values are already arrays:

- V1 ``instances`` and ``inputs`` (a list, or an object of lists): an array of the list's shape.
  The list must be rectangular, which is checked exactly: the body with every number, sign,
  exponent and blank removed must equal the outline that a rectangular list of that shape (and
  the rest of the body, unchanged) leaves.
- V2 ``inputs[i].data`` and the single-tensor ``data``: a flat array of the values in row-major
  order, whatever the nesting (as Triton reads it), typed by the tensor's ``datatype``.

Anything else (a small body, a value that is not a number, ``NaN``, integers past 64 bits,
invalid JSON, an object with a key twice or a key with a NUL in it) is made into plain Python
values for the codecs' general path, which also words the errors: by ``jsonio.loads`` for a body
under ``STEPWISE_BYTES``, else a piece at a time (from simdjson's document when it read the body,
else by ``jsonio.loads_large``), so that no single step holds the GIL for long. Every body size has
the same reading of duplicate keys (the last one counts).
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import numpy as np
import orjson
import simdjson

from modelserver.codecs import jsonio, pacing

#: bodies at least this long take simdjson (below it, orjson and the codecs are as fast)
FAST_PARSE_BYTES = 8192
#: simdjson reads numbers of these V2 datatypes into a buffer of this C type
_V2_BUFFER: dict[str, Literal["d", "i", "u"]] = {
    "FP16": "d", "FP32": "d", "FP64": "d",
    "INT8": "i", "INT16": "i", "INT32": "i", "INT64": "i",
    "UINT8": "i", "UINT16": "i", "UINT32": "i", "UINT64": "u",
}
_NUMPY = {"d": np.float64, "i": np.int64, "u": np.uint64}
#: what a number (and JSON's blanks) is made of: removed to compare a body's outline
_NUMBER_CHARS = b"0123456789+-.eE \t\r\n"
_V1_TENSORS = ("instances", "inputs")

#: a parser per thread (a parser is reused, and its documents are only valid until its next parse)
_local = threading.local()


class _NotFast(Exception):
    """This body takes the general path."""


def loads(body: bytes) -> Any:
    """Parse an inference body; large numeric tensors come back as arrays (see the module doc)."""
    if len(body) >= FAST_PARSE_BYTES:
        # a parser keeps the capacity of the largest document it has read (about seven times its
        # text) and reuses it: a fresh one would spend longer making that memory than parsing
        parser = _parser()
        try:
            doc = parser.parse(body)
        except (ValueError, RuntimeError):
            doc = None  # not JSON: jsonio says what is wrong with it
        if doc is not None:
            try:
                return _loads_fast(doc, body)
            except (_NotFast, ValueError, TypeError, RuntimeError, KeyError):
                pass  # not numbers, out of range, ragged...: the general path says what
            if len(body) >= STEPWISE_BYTES:
                try:
                    return _stepwise(doc)
                except (_NotFast, ValueError, TypeError, RuntimeError, KeyError):
                    pass  # a key twice, or with a NUL in it
        if len(body) >= STEPWISE_BYTES:  # NaN, invalid JSON, a key twice: still a piece at a time
            return jsonio.loads_large(body)
    return jsonio.loads(body)


#: bodies at least this long that the fast path cannot take are made into Python values a piece at
#: a time: orjson takes about 40 ms a megabyte in one call that holds the GIL, long enough to stall
#: the IO loop's thread (health probes included) while another thread parses
STEPWISE_BYTES = 256 * 1024
#: arrays up to this long are converted in one call
_STEP = 256


def forget_parser() -> None:
    """Let this thread's parser go (and the memory it kept for the largest body it read)."""
    _local.parser = None


def _parser() -> simdjson.Parser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser


def _stepwise(value: Any) -> Any:
    if isinstance(value, simdjson.Array):
        if len(value) <= _STEP:
            return value.as_list()
        out = []
        for i, item in enumerate(value):
            if i % _STEP == 0:
                pacing.let_others_run()
            out.append(_stepwise(item))
        return out
    if isinstance(value, simdjson.Object):
        return {key: _stepwise(item) for key, item in _fields(value).items()}
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _fields(obj: simdjson.Object) -> dict[str, Any]:
    """An object's members, in order, as simdjson proxies (``items()`` would convert every value to
    Python). A key given twice, or with a NUL in it (a lookup by name stops there), leaves the fast path."""
    keys = list(obj.keys())
    if len(set(keys)) != len(keys) or any("\x00" in key for key in keys):
        raise _NotFast
    return {key: obj[key] for key in keys}


def _loads_fast(doc: Any, body: bytes) -> dict[str, Any]:
    """simdjson's reading of the body. Returns only plain values and arrays, so no proxy into the
    parser outlives the call (the parser is reused)."""
    if not isinstance(doc, simdjson.Object):
        raise _NotFast
    fields = _fields(doc)
    inputs = fields.get("inputs")
    if isinstance(inputs, simdjson.Array) and len(inputs) and isinstance(inputs[0], simdjson.Object):
        out = {key: _plain(value) for key, value in fields.items() if key != "inputs"}
        out["inputs"] = [_v2_tensor(t) if isinstance(t, simdjson.Object) else _plain(t) for t in inputs]
        return out
    if "data" in fields and "name" in fields and inputs is None:  # the seed's single tensor
        return _v2_tensor(doc)
    if not any(key in fields for key in _V1_TENSORS):
        raise _NotFast
    return _v1_body(body, fields)


def _v2_tensor(t: simdjson.Object) -> dict[str, Any]:
    fields = _fields(t)
    tensor = {key: _plain(value) for key, value in fields.items() if key != "data"}
    data = fields.get("data")
    kind = _V2_BUFFER.get(tensor.get("datatype"))  # type: ignore[arg-type]
    if isinstance(data, simdjson.Array) and kind is not None:
        tensor["data"] = np.frombuffer(data.as_buffer(of_type=kind), dtype=_NUMPY[kind])
    elif "data" in fields:
        tensor["data"] = _plain(data)
    return tensor


def _v1_body(body: bytes, fields: dict[str, Any]) -> dict[str, Any]:
    """A V1 body whose ``instances``/``inputs`` are rectangular lists of numbers, as arrays."""
    out: dict[str, Any] = {}
    outline: list[bytes] = []
    for key, value in fields.items():
        if key in _V1_TENSORS and isinstance(value, simdjson.Array):
            out[key], shape = _v1_array(value)
            part = _outline(shape)
        elif key == "inputs" and isinstance(value, simdjson.Object):  # named columns
            named: dict[str, np.ndarray] = {}
            parts = []
            for name, column in _fields(value).items():
                if not isinstance(column, simdjson.Array):
                    raise _NotFast
                named[name], shape = _v1_array(column)
                parts.append(_strip(orjson.dumps(name)) + b":" + _outline(shape))
            out[key] = named
            part = b"{" + b",".join(parts) + b"}"
        else:
            out[key] = _plain(value)
            part = _strip(orjson.dumps(out[key]))
        outline.append(_strip(orjson.dumps(key)) + b":" + part)
    if _strip(body) != b"{" + b",".join(outline) + b"}":
        raise _NotFast  # ragged, or written in a way the outline does not follow
    return out


def _v1_array(value: simdjson.Array) -> tuple[np.ndarray, tuple[int, ...]]:
    """The numbers of a nested list as an array of the shape its first elements give."""
    shape: list[int] = []
    item: Any = value
    while isinstance(item, simdjson.Array):
        shape.append(len(item))
        if not shape[-1]:
            break
        item = item[0]
    try:
        arr = np.frombuffer(value.as_buffer(of_type="i"), dtype=np.int64)
    except TypeError:  # not all integers: doubles, as numpy reads a list mixing both
        arr = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)
    if arr.size != int(np.prod(shape)):
        raise _NotFast
    return arr.reshape(shape), tuple(shape)


def _outline(shape: tuple[int, ...]) -> bytes:
    """What a rectangular list of numbers of ``shape`` leaves when its numbers are removed."""
    text = b"[" + b"," * (shape[-1] - 1) + b"]" if shape[-1] else b"[]"
    for n in reversed(shape[:-1]):
        text = b"[" + text + (b"," + text) * (n - 1) + b"]" if n else b"[]"
    return text


def _strip(text: bytes) -> bytes:
    return text.translate(None, _NUMBER_CHARS)
