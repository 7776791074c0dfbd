"""Read and write safetensors files with numpy alone (no PyTorch, no ``safetensors`` package).

The format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the end of the header), an
optional ``__metadata__`` entry of strings, then the raw little-endian data. A model may instead be split
into shards named by ``model.safetensors.index.json`` (``{"weight_map": {tensor name: shard file}}``).

``load`` maps the files read-only (``np.memmap``), so a tensor costs no memory until it is used; BF16,
which numpy lacks, is widened to float32 on load.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from modelserver.errors import ModelLoadError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

#: safetensors dtype code -> numpy dtype of the stored bytes (BF16 is read as raw uint16, then widened)
_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES: dict[np.dtype, str] = {dt.newbyteorder("="): code for code, dt in _DTYPES.items() if code != "BF16"}

#: a header longer than this is not a header (the format's own readers use the same bound)
_MAX_HEADER = 100 * 1024 * 1024


def bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (uint16) to float32: they are the high half of a float32."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def load(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file, or of a model directory (single file or sharded by an index).

    Raises ``ModelLoadError`` naming the path and what was expected when a file is missing or corrupt.
    """
    path = Path(path)
    if path.is_dir():
        single, index = path / SINGLE_FILE, path / INDEX_FILE
        if single.is_file():
            return _load_file(single)
        if index.is_file():
            return _load_sharded(index)
        others = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
        hint = f" (found {', '.join(others)}: PyTorch pickles are not supported, convert them to safetensors)"
        raise ModelLoadError(
            f"{path}: no {SINGLE_FILE} or {INDEX_FILE}; expected the weights in safetensors format"
            + (hint if others else "")
        )
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such safetensors file")
    if path.name.endswith(".index.json"):
        return _load_sharded(path)
    return _load_file(path)


def _load_sharded(index: Path) -> dict[str, np.ndarray]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"{index}: not a safetensors index; expected JSON with a weight_map object of tensor name -> shard file "
            f"({exc})"
        ) from exc
    tensors: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index.parent / str(shard)
        if not shard_path.is_file():
            raise ModelLoadError(f"{shard_path}: missing; {index.name} lists it as a weights shard")
        tensors.update(_load_file(shard_path))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise ModelLoadError(f"{index}: tensor {missing[0]!r} is listed in the index but in none of the shards")
    return tensors


def _read_header(path: Path, size: int) -> tuple[dict[str, dict], int]:
    """The parsed header without ``__metadata__``, and the offset where the data starts."""

    def corrupt(what: str) -> ModelLoadError:
        return ModelLoadError(f"{path}: not a valid safetensors file: {what}")

    if size < 8:
        raise corrupt(f"{size} bytes, expected at least an 8-byte header length")
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(size - 8, _MAX_HEADER):
            raise corrupt(f"header length {n} does not fit in a file of {size} bytes")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise corrupt(f"the header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise corrupt("the header is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + n


def _load_file(path: Path) -> dict[str, np.ndarray]:
    try:
        size = path.stat().st_size
        header, start = _read_header(path, size)
        buffer = np.memmap(path, dtype=np.uint8, mode="r") if size > start else np.zeros(0, np.uint8)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read the safetensors file ({exc})") from exc
    data_size = size - start
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        try:
            code, shape, (begin, end) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
        except (TypeError, KeyError, ValueError) as exc:
            raise ModelLoadError(
                f"{path}: tensor {name!r} has a malformed header entry {info!r}; expected dtype, shape and data_offsets"
            ) from exc
        dtype = _DTYPES.get(code)
        if dtype is None:
            raise ModelLoadError(f"{path}: tensor {name!r} has dtype {code!r}; supported are {', '.join(_DTYPES)}")
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= begin <= end <= data_size) or end - begin != count * dtype.itemsize or min(shape, default=0) < 0:
            raise ModelLoadError(
                f"{path}: tensor {name!r} ({code} {shape}) has data_offsets [{begin}, {end}], expected "
                f"{count * dtype.itemsize} bytes inside the {data_size}-byte data section (truncated file?)"
            )
        array = buffer[start + begin : start + end].view(dtype).reshape(shape)
        tensors[name] = bf16_to_f32(array) if code == "BF16" else array
    return tensors


def _code(array: np.ndarray) -> str:
    if array.dtype.name == "bfloat16":  # ml_dtypes.bfloat16, as TensorFlow's numpy() returns it
        return "BF16"
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"cannot store dtype {array.dtype} in safetensors")
    return code


def save(path: str | os.PathLike[str], tensors: dict[str, np.ndarray]) -> None:
    """Write ``tensors`` as one safetensors file (header padded to 8 bytes, metadata ``{"format": "pt"}``)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs: list[bytes] = []
    offset = 0
    for name, tensor in tensors.items():
        array = np.asarray(tensor)
        code = _code(array)
        if code != "BF16":
            array = array.astype(_DTYPES[code], copy=False)  # little-endian on disk
        blob = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with Path(path).open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)
