"""TensorFlow Serving's gRPC messages: ``PredictRequest`` in, ``PredictResponse`` out, a model's
metadata (its ``SignatureDef``s) and status.

The messages are the ones ``tensorflow-serving-api`` ships, generated from TensorFlow Serving's
``.proto`` files; ``TensorProto``s are read and written by TensorFlow's own ``make_ndarray`` and
``make_tensor_proto``. Inputs must have their signature's dtype (as TensorFlow Serving asks) and
fit its shape; the checks and messages otherwise follow the other codecs'.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from modelserver import dtypes
from modelserver.codecs.tensors import check_batch, check_names, fits, fmt_shape
from modelserver.errors import InvalidInput, shown
from modelserver.interface import Servable, Signature, Tensors, TensorSpec

SIGNATURE_DEF = "signature_def"


def version_of(spec: Any) -> tuple[str | None, str | None]:
    """A ``ModelSpec``'s version number (as text) and version label, each None when not given."""
    version = str(spec.version.value) if spec.HasField("version") else None
    label = spec.version_label if spec.HasField("version_label") else None
    return version, label


def _tf_name(datatype: str) -> str:
    return tf.dtypes.as_dtype(dtypes.BY_V2[datatype].tf_name).name


def decode(request: predict_pb2.PredictRequest, sig: Signature, *, max_instances: int) -> Tensors:
    """A request's inputs as arrays, checked against the signature."""
    check_names(set(request.inputs), sig, "inputs")
    tensors: Tensors = {}
    for name, proto in request.inputs.items():
        spec = sig.input(name)
        where = f"inputs[{shown(name)}]"
        try:
            arr = tf.make_ndarray(proto)
        except Exception as e:  # a TensorProto whose content does not match its shape and dtype
            raise InvalidInput(f"{where}: not a readable TensorProto: {e}") from None
        got = tf.dtypes.as_dtype(proto.dtype).name
        if dtypes.from_numpy(arr.dtype).v2 != spec.datatype:
            raise InvalidInput(f"{where}: expected {_tf_name(spec.datatype)} values ({spec.datatype}), got {got}")
        if not fits(arr.shape, spec.shape):
            raise InvalidInput(f"{where}: expected shape {fmt_shape(spec.shape)}, got {fmt_shape(arr.shape)}")
        tensors[name] = arr
    check_batch(tensors, sig, "inputs", max_instances)
    return tensors


def outputs_wanted(request: predict_pb2.PredictRequest, sig: Signature) -> list[str]:
    """``output_filter`` (each one an output of the signature), or every output."""
    if not request.output_filter:
        return [t.name for t in sig.outputs]
    names = {t.name for t in sig.outputs}
    for name in request.output_filter:
        if name not in names:
            raise InvalidInput(f"output_filter: {shown(name)} is not an output of signature {sig.name!r} "
                               f"(it has {sorted(names)})")
    return list(request.output_filter)


def _model_spec(target: Any, servable: Servable, signature: str | None = None) -> None:
    target.name = servable.name
    target.version.value = servable.version
    if signature is not None:
        target.signature_name = signature


def encode(outputs: Tensors, names: list[str], servable: Servable, sig: Signature) -> predict_pb2.PredictResponse:
    answer = predict_pb2.PredictResponse()
    _model_spec(answer.model_spec, servable, sig.name)
    for name in names:
        answer.outputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(outputs[name])))
    return answer


def _tensor_info(spec: TensorSpec) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=f"{spec.name}:0", dtype=tf.dtypes.as_dtype(spec.dtype.tf_name).as_datatype_enum)
    if spec.shape is None:
        info.tensor_shape.unknown_rank = True
    else:
        info.tensor_shape.dim.extend([info.tensor_shape.Dim(size=d) for d in spec.shape])
    return info


def metadata(request: get_model_metadata_pb2.GetModelMetadataRequest, servable: Servable
             ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """The model's signatures as ``SignatureDef``s (the one field TensorFlow Serving serves)."""
    fields = list(request.metadata_field)
    if fields != [SIGNATURE_DEF]:
        raise InvalidInput(f"metadata_field: expected [{SIGNATURE_DEF!r}], got {shown(fields)}")
    defs = get_model_metadata_pb2.SignatureDefMap()
    for name, sig in servable.signatures.items():
        entry = defs.signature_def[name]
        entry.method_name = sig.method
        for t in sig.inputs:
            entry.inputs[t.name].CopyFrom(_tensor_info(t))
        for t in sig.outputs:
            entry.outputs[t.name].CopyFrom(_tensor_info(t))
    answer = get_model_metadata_pb2.GetModelMetadataResponse()
    _model_spec(answer.model_spec, servable)
    answer.metadata[SIGNATURE_DEF].Pack(defs)
    return answer


#: the repository's load states as TensorFlow Serving names them
_STATES = {"LOADING": "LOADING", "AVAILABLE": "AVAILABLE", "FAILED": "END"}


def status(versions: list[tuple[int, str, str]]) -> get_model_status_pb2.GetModelStatusResponse:
    """Each (version, state, error) as a ``ModelVersionStatus``; a failed load is END with its error."""
    answer = get_model_status_pb2.GetModelStatusResponse()
    for number, state, error in versions:
        entry = answer.model_version_status.add(version=number)
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(_STATES.get(state, "UNKNOWN"))
        if error:
            entry.status.error_code = 2  # tensorflow.error.UNKNOWN
            entry.status.error_message = error
    return answer
