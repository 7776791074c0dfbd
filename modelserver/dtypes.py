"""Datatype names across the protocols: Open Inference Protocol names, numpy and TensorFlow dtypes.

V2 speaks in ``FP32``/``INT64``/``BYTES``; TensorFlow signatures in ``tf.float32``; the codecs in
numpy. One table keeps the three in step; strings are numpy ``object`` arrays of ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    """One datatype: its V2 name, its numpy dtype, its TensorFlow name and its size in bytes."""

    v2: str
    numpy: np.dtype
    tf_name: str
    itemsize: int  # 0 for BYTES (variable length)

    @property
    def is_float(self) -> bool:
        return self.numpy.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.numpy.kind in "iu"

    @property
    def is_bool(self) -> bool:
        return self.numpy.kind == "b"

    @property
    def is_bytes(self) -> bool:
        return self.v2 == "BYTES"


_TABLE = [
    DType("BOOL", np.dtype(np.bool_), "bool", 1),
    DType("UINT8", np.dtype(np.uint8), "uint8", 1),
    DType("UINT16", np.dtype(np.uint16), "uint16", 2),
    DType("UINT32", np.dtype(np.uint32), "uint32", 4),
    DType("UINT64", np.dtype(np.uint64), "uint64", 8),
    DType("INT8", np.dtype(np.int8), "int8", 1),
    DType("INT16", np.dtype(np.int16), "int16", 2),
    DType("INT32", np.dtype(np.int32), "int32", 4),
    DType("INT64", np.dtype(np.int64), "int64", 8),
    DType("FP16", np.dtype(np.float16), "float16", 2),
    DType("FP32", np.dtype(np.float32), "float32", 4),
    DType("FP64", np.dtype(np.float64), "float64", 8),
    DType("BYTES", np.dtype(object), "string", 0),
]

BY_V2: dict[str, DType] = {d.v2: d for d in _TABLE}
BY_TF: dict[str, DType] = {d.tf_name: d for d in _TABLE}
V2_NAMES: tuple[str, ...] = tuple(BY_V2)


def from_v2(name: str) -> DType | None:
    """The datatype for a V2 name such as ``FP32``, or None when there is no such name."""
    return BY_V2.get(name)


def from_tf(name: str) -> DType:
    """The datatype for a TensorFlow dtype name such as ``float32``."""
    try:
        return BY_TF[name]
    except KeyError:
        raise ValueError(f"TensorFlow dtype {name!r} is not supported by the server") from None


def from_numpy(dtype: np.dtype) -> DType:
    """The datatype of a numpy array (``object``, ``bytes`` and ``str`` arrays are BYTES)."""
    if dtype.kind in "OSU":
        return BY_V2["BYTES"]
    for d in _TABLE:
        if d.numpy == dtype:
            return d
    raise ValueError(f"numpy dtype {dtype} has no V2 datatype")
