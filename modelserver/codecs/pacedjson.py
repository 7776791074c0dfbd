"""The standard library's JSON reading of a large body, done a piece at a time.

simdjson reads large bodies without holding the GIL for long, but refuses ``NaN`` and
``Infinity`` (which TensorFlow Serving's clients send) and says little about invalid JSON. The
readers that take those (orjson, then the standard library for ``NaN``) read a whole body in one
call: one to four seconds at ten megabytes with the GIL held, and the IO loop waits as long.

``loads`` gives what ``json.loads`` gives (``NaN``, ``Infinity`` and ``-Infinity`` read as floats,
the last of a key given twice counts, the same error messages and positions), in steps:

- objects, and arrays of a few elements (the V2 ``inputs`` list), are walked member by member;
- an array with no string in it (numbers, ``NaN``, ``null``, booleans, arrays of those: a tensor)
  is cut at its top-level commas into pieces of about ``PIECE_CHARS`` characters, each read in one
  call; where its brackets are is found once for the whole body, with numpy;
- any other array is read an element at a time.

Other threads may run between the steps (``pacing.let_others_run``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from modelserver.codecs import pacing

#: an array's piece read in one call: about a millisecond
PIECE_CHARS = 64 * 1024
#: arrays of up to this many elements are walked into (objects always are)
_FEW = 64

_decoder = json.JSONDecoder()  # takes NaN and Infinity
_scan = _decoder.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__
_blank = re.compile(r"[ \t\n\r]*")
_surrogate_escape = re.compile(r"\\u[dD][89abAB]")


def _skip(text: str, i: int) -> int:
    """The first position from ``i`` on that is not a JSON blank."""
    blank = _blank.match(text, i)
    return blank.end() if blank else i


class _Outline:
    """Where a text's brackets, commas and quotes are, and how deep each bracket and comma sits
    (counted as if no string held a bracket: trusted only between two quotes, see ``array_end``)."""

    def __init__(self, text: str, body: bytes) -> None:
        ascii_ = len(text) == len(body)  # then a character's index is its byte's
        codes = np.frombuffer(body if ascii_ else text.encode("utf-32-le"), dtype=np.uint8 if ascii_ else np.uint32)
        self.brackets = np.flatnonzero((codes == ord("[")) | (codes == ord("]")))
        #: the nesting after each bracket
        self.depth = np.cumsum(np.where(codes[self.brackets] == ord("["), 1, -1).astype(np.int32))
        self.commas = np.flatnonzero(codes == ord(","))
        self.quotes = np.flatnonzero(codes == ord('"'))

    def _depth_at(self, positions: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self.brackets, positions, side="right") - 1
        return np.where(k >= 0, self.depth[np.maximum(k, 0)], 0)

    def array_end(self, start: int) -> int | None:
        """The position of the ``]`` closing the ``[`` at ``start``, when no quote lies between
        (then every bracket between is the array's own); else None."""
        k = int(np.searchsorted(self.brackets, start))
        closing = np.flatnonzero(self.depth[k + 1:] == self.depth[k] - 1)
        if not closing.size:
            return None
        end = int(self.brackets[k + 1 + closing[0]])
        q = int(np.searchsorted(self.quotes, start))
        if q < self.quotes.size and self.quotes[q] < end:
            return None
        return end

    def cuts(self, start: int, end: int) -> list[int]:
        """Top-level commas of the array ``[start, end]`` about ``PIECE_CHARS`` apart."""
        commas = self.commas[np.searchsorted(self.commas, start):np.searchsorted(self.commas, end)]
        commas = commas[self._depth_at(commas) == self._depth_at(np.array([start]))[0]]
        if not commas.size:
            return []
        targets = np.arange(start + PIECE_CHARS, end, PIECE_CHARS)
        picked = np.unique(np.minimum(np.searchsorted(commas, targets), commas.size - 1))
        return [int(c) for c in commas[picked]]


def loads(body: bytes) -> Any:
    """``json.loads(body)`` a piece at a time; raises what it raises (``json.JSONDecodeError``,
    ``UnicodeDecodeError``, ``RecursionError``), and ``ValueError`` for a lone surrogate escape."""
    text = body.decode("utf-8")
    reader = _Reader(text, body)
    value, end = reader.value(_skip(text, 0), 0)
    end = _skip(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    if _surrogate_escape.search(text):
        _check_text(value)
    return value


def _check_text(value: Any) -> None:
    """Strings must be text that encodes as UTF-8 (``\\ud800`` alone does not)."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k)
            _check_text(v)
    elif isinstance(value, list):
        for v in value:
            _check_text(v)


class _Reader:
    def __init__(self, text: str, body: bytes) -> None:
        self.text = text
        self.outline = _Outline(text, body)

    def value(self, i: int, depth: int) -> tuple[Any, int]:
        c = self.text[i:i + 1]
        if c == "{":
            return self.object(i, depth)
        if c == "[" and depth < 4:
            return self.array(i, depth)
        return self.scan(i)

    def scan(self, i: int) -> tuple[Any, int]:
        try:
            return _scan(self.text, i)
        except StopIteration as e:
            raise json.JSONDecodeError("Expecting value", self.text, e.value) from None

    def object(self, i: int, depth: int) -> tuple[dict[str, Any], int]:
        text, out = self.text, dict[str, Any]()
        i = _skip(text, i + 1)
        if text[i:i + 1] == "}":
            return out, i + 1
        while True:
            if text[i:i + 1] != '"':
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
            key, i = self.scan(i)
            i = _skip(text, i)
            if text[i:i + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
            out[key], i = self.value(_skip(text, i + 1), depth + 1)
            i = _skip(text, i)
            c = text[i:i + 1]
            if c == "}":
                return out, i + 1
            if c != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
            i = _skip(text, i + 1)

    def array(self, i: int, depth: int) -> tuple[list[Any], int]:
        end = self.outline.array_end(i)
        if end is not None and end - i > PIECE_CHARS:
            return self.pieces(i, end), end + 1
        if end is not None:  # small and string-free: read whole, in one call
            return self.scan(i)
        text, out = self.text, list[Any]()
        i = _skip(text, i + 1)
        if text[i:i + 1] == "]":
            return out, i + 1
        while True:
            if len(out) % 256 == 255:
                pacing.let_others_run()
            value, i = self.value(i, depth + 1) if len(out) < _FEW else self.scan(i)
            out.append(value)
            i = _skip(text, i)
            c = text[i:i + 1]
            if c == "]":
                return out, i + 1
            if c != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
            i = _skip(text, i + 1)

    def pieces(self, start: int, end: int) -> list[Any]:
        """A string-free array read a piece at a time; a piece that fails is read again element
        by element, so the error names its position in the body."""
        out: list[Any] = []
        bounds = [start, *self.outline.cuts(start, end), end]
        for a, b in zip(bounds, bounds[1:]):
            pacing.let_others_run()
            try:
                out.extend(_decoder.decode("[" + self.text[a + 1:b] + "]"))
            except json.JSONDecodeError:
                self.elements(a + 1, b)
                raise  # elements() found nothing wrong: report what the piece said
        return out

    def elements(self, i: int, end: int) -> None:
        text = self.text
        while True:
            i = _skip(text, i)
            _, i = self.scan(i)
            i = _skip(text, i)
            if i >= end:
                return
            if text[i:i + 1] != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
            i += 1
