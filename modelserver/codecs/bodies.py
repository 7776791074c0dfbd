"""What every tensor request body may carry whatever its protocol: the signature it names, and,
on the single-model paths, which of the three bodies it is; and the one rule about JSON booleans.

A JSON ``true``/``false`` is a value of a BOOL tensor only: in a numeric tensor it is refused (as
TensorFlow Serving does), not read as 1 or 0. The body parsers never read booleans as numbers
(simdjson refuses them), but the general path's numpy would, so a body that has the words ``true``
or ``false`` in it at all is searched for them before decoding (``refuse_booleans``).

``/predict`` tells the bodies apart by their keys, as the product's payload description says: an
``instances`` object or an ``inputs`` object is V1, ``name`` with ``data`` is the single-tensor
form, an ``inputs`` list of tensor objects is V2.
"""

from __future__ import annotations

from typing import Any, Literal

from modelserver.codecs.tensors import MAX_RANK
from modelserver.codecs.v2 import is_single_tensor, is_v2
from modelserver.errors import InvalidInput, shown
from modelserver.interface import Signature

BodyProtocol = Literal["v1", "v2"]


def signature_name(body: Any) -> str | None:
    """The signature a body names: V1's ``signature_name``, V2's ``parameters.signature_name``."""
    if not isinstance(body, dict):
        return None
    params = body.get("parameters")
    name = body.get("signature_name", params.get("signature_name") if isinstance(params, dict) else None)
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidInput(f"signature_name: expected a non-empty string, got {shown(name)}")
    return name


def protocol_of(body: Any) -> BodyProtocol:
    """``v2`` for a V2 or single-tensor body (both answered in the V2 form), else ``v1``."""
    return "v2" if is_v2(body) or is_single_tensor(body) else "v1"


def may_have_booleans(raw: bytes) -> bool:
    """Whether a body's text could hold a JSON boolean (a byte search, so nearly free)."""
    return b"true" in raw or b"false" in raw


def _first_boolean(value: Any, where: str, depth: int = 0) -> str | None:
    if isinstance(value, bool):
        return where
    if isinstance(value, list) and depth <= MAX_RANK:  # deeper: the codec refuses the nesting itself
        for i, v in enumerate(value):
            found = _first_boolean(v, f"{where}[{i}]", depth + 1)
            if found is not None:
                return found
    return None


def refuse_booleans(body: Any, sig: Signature, protocol: BodyProtocol) -> None:
    """A 400 naming the first JSON boolean in a numeric (not BOOL, not BYTES) input of ``body``."""
    if not isinstance(body, dict):
        return
    numeric = {t.name for t in sig.inputs if t.datatype not in ("BOOL", "BYTES")}
    places: list[tuple[str, str, Any]] = []  # (input name, where, values)
    if protocol == "v2":
        tensors = body.get("inputs") if is_v2(body) else [body]
        for i, t in enumerate(tensors if isinstance(tensors, list) else []):
            if isinstance(t, dict) and isinstance(t.get("name"), str) and "data" in t:
                where = f"inputs[{i}] ({t['name']!r}).data" if t is not body else "body.data"
                places.append((t["name"], where, t["data"]))
    else:
        only = sig.inputs[0].name if len(sig.inputs) == 1 else None
        rows, cols = body.get("instances"), body.get("inputs")
        for i, row in enumerate(rows if isinstance(rows, list) else []):
            if isinstance(row, dict):
                places.extend((n, f"instances[{i}].{n}", v) for n, v in row.items())
            elif only is not None:
                places.append((only, f"instances[{i}]", row))
        if isinstance(cols, dict):
            places.extend((n, f"inputs.{n}", v) for n, v in cols.items())
        elif cols is not None and only is not None:
            places.append((only, "inputs", cols))
    for name, where, values in places:
        if name in numeric:
            found = _first_boolean(values, where)
            if found is not None:
                datatype = sig.input(name).datatype
                raise InvalidInput(f"{found}: expected a number ({datatype}), got a boolean; JSON true and "
                                   "false are values of BOOL inputs only")
