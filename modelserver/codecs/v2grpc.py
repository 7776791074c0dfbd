"""The Open Inference Protocol over gRPC: ``ModelInferRequest`` in, ``ModelInferResponse`` out.

The messages are the ones ``tritonclient`` ships, generated from the protocol's ``.proto`` (package
``inference``, whose ``GRPCInferenceService`` is KServe's with Triton's extensions). A request is
turned into what the V2 JSON codec reads, so both forms share one set of checks and messages: typed
``contents`` become a tensor's ``data``, and ``raw_input_contents`` become binary inputs (each one's
``binary_data_size``, the bytes as the binary tail). Outputs go back as ``raw_output_contents``, as
Triton sends them (little-endian values; BYTES elements each after a 4-byte length).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from modelserver import dtypes
from modelserver.codecs import v2
from modelserver.errors import InvalidInput, shown
from modelserver.interface import Servable, Signature, Tensors

#: the typed ``contents`` field of each datatype (FP16 travels as raw contents only)
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def parameter(p: pb.InferParameter) -> Any:
    """An ``InferParameter`` as a plain value."""
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def _contents(t: Any, where: str) -> np.ndarray:
    """A tensor's typed contents as a flat array; the one field its datatype uses must hold them."""
    filled = [f.name for f, _ in t.contents.ListFields()]
    field = CONTENTS.get(t.datatype)
    if field is None:
        raise InvalidInput(f"{where}: {t.datatype} values travel in raw_input_contents only, got {filled or 'none'}")
    others = [f for f in filled if f != field]
    if others:
        raise InvalidInput(f"{where}: a {t.datatype} tensor's values go in contents.{field}, got contents.{others[0]}")
    values = getattr(t.contents, field)
    if t.datatype == "BYTES":
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    return np.array(values, dtype=dtypes.BY_V2[t.datatype].numpy)


def decode(request: pb.ModelInferRequest, sig: Signature, *, max_instances: int) -> v2.V2Request:
    """Check a request against the signature, as ``v2.decode`` checks a JSON body."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"raw_input_contents: one entry per input ({len(request.inputs)}), got {len(raw)}")
    inputs: list[dict[str, Any]] = []
    for i, t in enumerate(request.inputs):
        where = f"inputs[{i}] ({shown(t.name)})"
        if t.datatype not in dtypes.BY_V2:
            raise InvalidInput(f"{where}.datatype: expected one of {', '.join(dtypes.V2_NAMES)}, got {shown(t.datatype)}")
        tensor: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if raw:
            if t.HasField("contents"):
                raise InvalidInput(f"{where}: values in both contents and raw_input_contents")
            tensor["parameters"] = {"binary_data_size": len(raw[i])}
        else:
            tensor["data"] = _contents(t, where)
        inputs.append(tensor)
    body: dict[str, Any] = {"inputs": inputs}
    if request.id:
        body["id"] = request.id
    params = {k: parameter(p) for k, p in request.parameters.items()}
    if params:
        body["parameters"] = params
    if request.outputs:
        body["outputs"] = [{"name": o.name} for o in request.outputs]
    return v2.decode(body, b"".join(raw), sig, max_instances=max_instances)


def encode(request: v2.V2Request, outputs: Tensors, model_name: str, model_version: int) -> pb.ModelInferResponse:
    """The response: the requested outputs (all, when none was named) as raw contents."""
    names = [n for n, _ in request.outputs] if request.outputs is not None else list(outputs)
    answer = pb.ModelInferResponse(model_name=model_name, model_version=str(model_version), id=request.id)
    for name in names:
        arr = np.asarray(outputs[name])
        answer.outputs.add(name=name, datatype=dtypes.from_numpy(arr.dtype).v2, shape=list(arr.shape))
        answer.raw_output_contents.append(v2.binary_bytes(arr))
    return answer


def model_metadata(servable: Servable, versions: list[int], sig: Signature) -> pb.ModelMetadataResponse:
    """What ``GET /v2/models/{m}`` says, as a ``ModelMetadataResponse``."""
    meta = v2.model_metadata(servable, versions, sig)
    answer = pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"])
    for t in meta["inputs"]:
        answer.inputs.add(**t)
    for t in meta["outputs"]:
        answer.outputs.add(**t)
    return answer


# -- the repository extension ---------------------------------------------------------------------
def _repository_name(name: str, where: str) -> None:
    if name:
        raise InvalidInput(f"{where}: repository_name: this server has one repository (leave it empty), got {shown(name)}")


def repository_index(request: pb.RepositoryIndexRequest) -> bool:
    """The index call's ``ready`` (True: only READY models)."""
    _repository_name(request.repository_name, "repository index")
    return bool(request.ready)


def repository_call(request: pb.RepositoryModelLoadRequest | pb.RepositoryModelUnloadRequest, verb: str) -> str:
    """A load or unload call checked as its HTTP body is (``v2.parse_repository_call``); the model's name."""
    _repository_name(request.repository_name, f"repository {verb}")
    params = {k: getattr(p, p.WhichOneof("parameter_choice") or "bool_param") for k, p in request.parameters.items()}
    v2.parse_repository_call({"parameters": params} if params else None, verb)
    return request.model_name


def index_response(rows: list[dict[str, str]]) -> pb.RepositoryIndexResponse:
    return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**row) for row in rows])
