"""V2 (Open Inference Protocol) bodies, the seed's single-tensor form and Triton's binary extension.

JSON request: ``{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?}``.
With the binary extension the body is that JSON header (its length in the
``Inference-Header-Content-Length`` header) followed by the raw bytes of every input whose
parameters carry ``binary_data_size``, in order; outputs asked for as binary come back the same way.
"""

from __future__ import annotations

import math
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelserver import dtypes
from modelserver.codecs.tensors import check_batch, fits, fmt_shape, jsonable, to_array
from modelserver.errors import InvalidInput, shown
from modelserver.interface import Servable, Signature, Tensors

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass
class V2Request:
    inputs: Tensors
    id: str
    parameters: dict[str, Any] = field(default_factory=dict)
    #: requested outputs in order (None: all), with whether each is wanted as binary
    outputs: list[tuple[str, bool]] | None = None
    binary_default: bool = False

    def without_inputs(self) -> V2Request:
        """The request as encoding its answer needs it: the inputs left out."""
        return V2Request({}, self.id, self.parameters, self.outputs, self.binary_default)


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """Split a body into its JSON header and binary tail (empty without the extension)."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        raise InvalidInput(f"{HEADER_LENGTH}: expected an integer, got {shown(header_length)}") from None
    if not 0 <= n <= len(body):
        raise InvalidInput(f"{HEADER_LENGTH}: expected at most the body length {len(body)}, got {n}")
    return body[:n], body[n:]


def is_single_tensor(body: Any) -> bool:
    """The seed's bare ``{"name", "shape", "datatype", "data"}`` request."""
    return isinstance(body, dict) and "name" in body and "data" in body and "inputs" not in body


def is_v2(body: Any) -> bool:
    """A V2 body: ``inputs`` is a list of tensor objects (V1 columnar has data there instead)."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    return (
        isinstance(inputs, list)
        and bool(inputs)
        and all(isinstance(t, dict) and "datatype" in t and "name" in t for t in inputs)
    )


def _int_list(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise InvalidInput(f"{where}: expected a list of non-negative integers, got {shown(value)}")
    return value


def _from_binary(raw: bytes, dt: dtypes.DType, count: int, where: str) -> np.ndarray:
    if dt.is_bytes:
        items: list[bytes] = []
        pos = 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise InvalidInput(f"{where}: truncated BYTES element length at byte {pos}")
            (size,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + size > len(raw):
                raise InvalidInput(f"{where}: BYTES element of {size} bytes runs past the data")
            items.append(raw[pos : pos + size])
            pos += size
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out
    expected = count * dt.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"{where}: shape needs {count} {dt.v2} values ({expected} bytes), got {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=dt.numpy.newbyteorder("<")).astype(dt.numpy, copy=False)


def _leaves(value: list[Any]) -> Iterator[Any]:
    for v in value:
        if type(v) is list:
            yield from _leaves(v)
        else:
            yield v


def data_values(data: Any, dt: dtypes.DType, where: str) -> np.ndarray:
    """A tensor's ``data`` as a flat array. Nested lists are read in row-major order and need not be
    rectangular (as Triton reads them, and as ``fastparse`` reads large bodies): the caller checks the
    count against the shape. A bad value is reported by its place in the nesting."""
    try:
        return to_array(data, dt, where).reshape(-1)
    except InvalidInput as nested_error:
        if not (type(data) is list and any(type(v) is list for v in data)):
            raise
        try:
            return to_array(list(_leaves(data)), dt, where).reshape(-1)
        except InvalidInput:
            raise nested_error from None


#: the fields of a V2 request, of an input tensor and of a requested output; any other is refused
REQUEST_FIELDS = ("id", "parameters", "inputs", "outputs")
TENSOR_FIELDS = ("name", "shape", "datatype", "parameters", "data")
OUTPUT_FIELDS = ("name", "parameters")


def refuse_unknown(obj: dict[str, Any], fields: tuple[str, ...], where: str) -> None:
    unknown = sorted(k for k in obj if k not in fields)
    if unknown:
        raise InvalidInput(f"{where}: {shown(unknown[0])} is not a field here (expected {', '.join(map(repr, fields))})")


def decode_tensor(
    t: Any, i: int, sig: Signature, binary: memoryview, offset: int, where: str
) -> tuple[str, np.ndarray, int]:
    """One input tensor object; returns its name, array and the new offset into the binary tail."""
    if not isinstance(t, dict):
        raise InvalidInput(f"{where}: expected a tensor object, got {type(t).__name__}")
    refuse_unknown(t, TENSOR_FIELDS, where)
    for key in ("name", "shape", "datatype"):
        if key not in t:
            raise InvalidInput(f"{where}: missing field {key!r} (a tensor needs name, shape, datatype, data)")
    name = t["name"]
    if not isinstance(name, str):
        raise InvalidInput(f"{where}.name: expected a string, got {shown(name)}")
    spec = sig.input(name)
    where = f"{where} ({name!r})"
    datatype = t["datatype"]
    dt = dtypes.from_v2(datatype) if isinstance(datatype, str) else None
    if dt is None:
        raise InvalidInput(f"{where}.datatype: expected one of {', '.join(dtypes.V2_NAMES)}, got {shown(datatype)}")
    if dt.v2 != spec.datatype:
        raise InvalidInput(f"{where}: expected datatype {spec.datatype}, got {dt.v2}")
    shape = tuple(_int_list(t["shape"], f"{where}.shape"))
    if not fits(shape, spec.shape):
        raise InvalidInput(f"{where}: expected shape {fmt_shape(spec.shape)}, got {fmt_shape(shape)}")
    count = math.prod(shape)  # Python integers: a huge shape cannot wrap around as int64 would
    params = t.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}.parameters: expected an object, got {shown(params)}")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InvalidInput(
                f"{where}.parameters.binary_data_size: {size!r} bytes, but {len(binary) - offset} remain"
            )
        flat = _from_binary(bytes(binary[offset : offset + size]), dt, count, where)
        offset += size
    else:
        if "data" not in t:
            raise InvalidInput(f"{where}: missing field 'data'")
        flat = data_values(t["data"], dt, f"{where}.data")
    if flat.size != count:
        raise InvalidInput(f"{where}: shape {fmt_shape(shape)} needs {count} values, got {flat.size}")
    return name, flat.reshape(shape), offset


def decode(body: Any, binary: bytes, sig: Signature, *, max_instances: int) -> V2Request:
    """Check a V2 body (and its binary tail) against the signature."""
    if not isinstance(body, dict):
        raise InvalidInput(f"expected a JSON object with 'inputs', got {type(body).__name__}")
    refuse_unknown(body, REQUEST_FIELDS, "body")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(f"inputs: expected a non-empty list of tensors, got {inputs!r:.60}")
    view = memoryview(binary)
    offset = 0
    tensors: Tensors = {}
    for i, t in enumerate(inputs):
        name, arr, offset = decode_tensor(t, i, sig, view, offset, f"inputs[{i}]")
        if name in tensors:
            raise InvalidInput(f"inputs[{i}]: input {name!r} given twice")
        tensors[name] = arr
    if offset != len(binary):
        raise InvalidInput(f"binary data: {len(binary) - offset} bytes after the last binary input")
    missing = [n for n in sig.input_names if n not in tensors]
    if missing:
        raise InvalidInput(f"inputs: missing input {missing[0]!r}; the signature takes {sig.input_names}")
    check_batch(tensors, sig, "inputs", max_instances)
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"parameters: expected an object, got {shown(params)}")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"id: expected a string, got {shown(request_id)}")
    return V2Request(
        inputs=tensors,
        id=request_id or str(uuid.uuid4()),
        parameters=params,
        outputs=_requested_outputs(body.get("outputs"), sig),
        binary_default=bool(params.get("binary_data_output", False)),
    )


def decode_single(body: dict[str, Any], sig: Signature, *, max_instances: int) -> V2Request:
    """The seed's bare single-tensor body, for a signature with one input."""
    if len(sig.inputs) != 1:
        raise InvalidInput(
            f"a single-tensor body fits a signature with one input; {sig.name!r} takes {sig.input_names}"
        )
    name, arr, _ = decode_tensor(body, 0, sig, memoryview(b""), 0, "body")
    check_batch({name: arr}, sig, "body", max_instances)
    params = body.get("parameters") or {}
    return V2Request(inputs={name: arr}, id=str(uuid.uuid4()), parameters=params if isinstance(params, dict) else {})


def _requested_outputs(outputs: Any, sig: Signature) -> list[tuple[str, bool]] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise InvalidInput(f"outputs: expected a list of {{\"name\"}} objects, got {outputs!r:.60}")
    wanted: list[tuple[str, bool]] = []
    for i, o in enumerate(outputs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise InvalidInput(f"outputs[{i}]: expected an object with a 'name', got {o!r:.60}")
        refuse_unknown(o, OUTPUT_FIELDS, f"outputs[{i}]")
        sig.output(o["name"])
        params = o.get("parameters") or {}
        wanted.append((o["name"], bool(params.get("binary_data", False)) if isinstance(params, dict) else False))
    return wanted


def binary_bytes(arr: np.ndarray) -> bytes:
    """An array as the binary extension (and gRPC's raw contents) carry it."""
    if arr.dtype.kind in "OSU":
        parts = []
        for v in arr.ravel():
            b = v if isinstance(v, bytes) else str(v).encode()
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def encode(
    request: V2Request, outputs: Tensors, model_name: str, model_version: int, *, explain: bool = False
) -> tuple[dict[str, Any], bytes]:
    """The response header object and binary tail (empty when every output is JSON)."""
    if request.outputs is None or explain:
        selected = [(n, request.binary_default) for n in outputs]
    else:
        selected = request.outputs
    tensors = []
    tail: list[bytes] = []
    for name, as_binary in selected:
        arr = np.asarray(outputs[name])
        entry: dict[str, Any] = {
            "name": name,
            "datatype": dtypes.from_numpy(arr.dtype).v2,
            "shape": list(arr.shape),
        }
        if as_binary:
            raw = binary_bytes(arr)
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            flat = arr.reshape(-1)
            entry["data"] = jsonable(flat) if flat.dtype.kind in "OSU" else flat
        tensors.append(entry)
    header: dict[str, Any] = {
        "model_name": model_name,
        "model_version": str(model_version),
        "id": request.id,
        "outputs": tensors,
    }
    return header, b"".join(tail)


def model_metadata(servable: Servable, versions: list[int], sig: Signature) -> dict[str, Any]:
    """A model's metadata: its versions, platform and a signature's tensors (``GET /v2/models/{m}``)."""
    return {
        "name": servable.name,
        "versions": [str(v) for v in versions],
        "platform": servable.platform,
        "inputs": [t.describe() for t in sig.inputs],
        "outputs": [t.describe() for t in sig.outputs],
        "parameters": {"signature_name": sig.name, "signatures": sorted(servable.signatures)},
    }


# -- the repository extension ---------------------------------------------------------------------
def parse_repository_index(body: Any) -> bool:
    """``POST /v2/repository/index``'s body (empty, or ``{"ready": bool}``): True to list only READY models."""
    if body is None:
        return False
    if not isinstance(body, dict):
        raise InvalidInput(f"repository index: expected a JSON object or no body, got {shown(body)}")
    refuse_unknown(body, ("ready",), "repository index")
    ready = body.get("ready", False)
    if not isinstance(ready, bool):
        raise InvalidInput(f"repository index: ready: expected true or false, got {shown(ready)}")
    return ready


def parse_repository_call(body: Any, verb: str) -> None:
    """A load or unload call's body: empty, or ``{"parameters": {...}}``. Loading takes no parameters
    (a model's files are its configuration); unloading takes ``unload_dependents`` (no model here
    depends on another, so it changes nothing)."""
    if body is None:
        return
    where = f"repository {verb}"
    if not isinstance(body, dict):
        raise InvalidInput(f"{where}: expected a JSON object or no body, got {shown(body)}")
    refuse_unknown(body, ("parameters",), where)
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}: parameters: expected an object, got {shown(params)}")
    allowed = ("unload_dependents",) if verb == "unload" else ()
    for key, value in params.items():
        if key not in allowed:
            raise InvalidInput(
                f"{where}: parameters: {shown(key)} is not served (models load from their files in the repository"
                + ("; the only parameter is 'unload_dependents')" if verb == "unload" else ", with no parameters)")
            )
        if not isinstance(value, bool):
            raise InvalidInput(f"{where}: parameters: {key}: expected true or false, got {shown(value)}")
