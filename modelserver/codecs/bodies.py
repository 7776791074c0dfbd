"""What every tensor request body may carry whatever its protocol: the signature it names, and,
on the single-model paths, which of the three bodies it is.

``/predict`` tells the bodies apart by their keys, as the product's payload description says: an
``instances`` object or an ``inputs`` object is V1, ``name`` with ``data`` is the single-tensor
form, an ``inputs`` list of tensor objects is V2.
"""

from __future__ import annotations

from typing import Any, Literal

from modelserver.codecs.v2 import is_single_tensor, is_v2
from modelserver.errors import InvalidInput

BodyProtocol = Literal["v1", "v2"]


def signature_name(body: Any) -> str | None:
    """The signature a body names: V1's ``signature_name``, V2's ``parameters.signature_name``."""
    if not isinstance(body, dict):
        return None
    params = body.get("parameters")
    name = body.get("signature_name", params.get("signature_name") if isinstance(params, dict) else None)
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidInput(f"signature_name: expected a non-empty string, got {name!r}")
    return name


def protocol_of(body: Any) -> BodyProtocol:
    """``v2`` for a V2 or single-tensor body (both answered in the V2 form), else ``v1``."""
    return "v2" if is_v2(body) or is_single_tensor(body) else "v1"
