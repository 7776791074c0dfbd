"""V1 (TensorFlow Serving REST) bodies: row and columnar requests in, predictions out.

Row format: ``{"instances": [...]}``, one element per row of the batch. As TensorFlow Serving, an
instance has the input's rank minus the batch dimension; as Posit Connect, an instance may instead
be a whole tensor of the input's full rank, run as its own batch (``whole`` requests). Columnar:
``{"inputs": tensor-or-{name: tensor}}`` -> ``{"outputs": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserver.codecs import pacing
from modelserver.codecs.tensors import (
    batch_rows,
    check_batch,
    check_names,
    fits,
    fmt_shape,
    jsonable,
    to_array,
    try_array,
    walk_shape,
)
from modelserver.errors import InvalidInput, shown
from modelserver.interface import Signature, Tensors, TensorSpec

ROW, COLUMNAR = "row", "columnar"


@dataclass
class V1Request:
    """A decoded V1 body: the batches to run (one, or one per whole-tensor instance)."""

    fmt: str
    batches: list[Tensors]
    whole: bool = False
    named: bool = False

    @property
    def rows(self) -> int:
        return len(self.batches) if self.whole else batch_rows(self.batches[0])

    def without_inputs(self) -> V1Request:
        """The request as encoding its answer needs it: the inputs' values left out (their rows kept)."""
        empty = [{n: np.empty(a.shape[:1] + (0,) * (a.ndim - 1), a.dtype) for n, a in b.items()} for b in self.batches]
        return V1Request(self.fmt, empty, self.whole, self.named)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _row_shape(spec: TensorSpec) -> tuple[int, ...] | None:
    return None if spec.shape is None else spec.shape[1:]


def _describe_expected(spec: TensorSpec) -> str:
    if spec.shape is None:
        return f"input {spec.name!r}"
    if not spec.shape:
        return f"a scalar for input {spec.name!r}"
    return (
        f"shape {fmt_shape(_row_shape(spec))} (one row of input {spec.name!r}, "
        f"shape {fmt_shape(spec.shape)}) or a whole tensor of shape {fmt_shape(spec.shape)}"
    )


#: the fields of a V1 body (``target`` too when explaining); any other is refused, not ignored
FIELDS = ("signature_name", "instances", "inputs")


def decode(body: Any, sig: Signature, *, max_instances: int, explain: bool = False) -> V1Request:
    """Check a V1 body against the signature and turn it into input tensors."""
    if not isinstance(body, dict):
        raise InvalidInput(f"expected a JSON object with 'instances' or 'inputs', got {type(body).__name__}")
    fields = FIELDS + ("target",) if explain else FIELDS
    unknown = sorted(k for k in body if k not in fields)
    if unknown:
        raise InvalidInput(f"{shown(unknown[0])}: not a field of a V1 {'explain' if explain else 'predict'} body "
                           f"(it has {', '.join(repr(f) for f in fields)})")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise InvalidInput(
            "expected exactly one of 'instances' (row format) or 'inputs' (columnar format), "
            f"got keys {sorted(body)}"
        )
    if has_rows:
        return _decode_rows(body["instances"], sig, max_instances)
    return _decode_columns(body["inputs"], sig, max_instances)


def _decode_rows(instances: Any, sig: Signature, max_instances: int) -> V1Request:
    if not isinstance(instances, (list, np.ndarray)):  # an array when the body's parser read it as one
        raise InvalidInput(f"instances: expected a list, got {type(instances).__name__}")
    if not len(instances):
        raise InvalidInput("instances: expected at least one instance, got an empty list")
    if len(instances) > max_instances:
        raise InvalidInput(f"instances: at most {max_instances} per request, got {len(instances)}")
    first = instances[0]
    named = len(sig.inputs) > 1 or (isinstance(first, dict) and not _is_b64(first))
    columns: dict[str, tuple[list[Any] | np.ndarray, str]] = {}
    if named:
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict) or _is_b64(inst):
                got = "list" if isinstance(inst, (list, np.ndarray)) else type(inst).__name__
                raise InvalidInput(
                    f"instances[{i}]: expected an object with inputs {sorted(sig.input_names)}, got {got}"
                )
            check_names(set(inst), sig, f"instances[{i}]")
        for spec in sig.inputs:
            columns[spec.name] = ([inst[spec.name] for inst in instances], f".{spec.name}")
    else:
        columns[sig.inputs[0].name] = (instances, "")

    modes: dict[str, str] = {}
    arrays: dict[str, np.ndarray | list[np.ndarray]] = {}
    for name, (values, suffix) in columns.items():
        mode, data = _column(values, sig.input(name), suffix)
        modes[name] = mode
        arrays[name] = data
    if len(set(modes.values())) > 1:
        rows = sorted(n for n, m in modes.items() if m == "row")
        whole = sorted(n for n, m in modes.items() if m == "whole")
        raise InvalidInput(
            f"instances[0]: mixed ranks: inputs {rows} are rows but {whole} are whole tensors"
        )
    if next(iter(modes.values())) == "row":
        return V1Request(ROW, [{n: a for n, a in arrays.items()}], named=named)  # type: ignore[misc]
    batches = [{n: arrays[n][i] for n in arrays} for i in range(len(instances))]
    for i, batch in enumerate(batches):
        check_batch(batch, sig, f"instances[{i}]", max_instances)
    return V1Request(ROW, batches, whole=True, named=named)  # type: ignore[arg-type]


#: instances converted together while the slow path looks for the one that does not fit
CHUNK = 2048


def _column(values: list[Any] | np.ndarray, spec: TensorSpec, suffix: str) -> tuple[str, Any]:
    """One input's instances: ("row", stacked array) or ("whole", [array per instance])."""
    dt = spec.dtype
    row_spec = _row_shape(spec)

    def mode_of(shape: tuple[int, ...]) -> str | None:
        if spec.shape != () and fits(shape, row_spec):
            return "row"
        if spec.shape is not None and fits(shape, spec.shape):
            return "whole"
        return None

    if isinstance(values, np.ndarray) or len(values) <= CHUNK:
        try:
            arr = try_array(values, dt, "instances")
        except InvalidInput:  # the walk below names the element with its input's name
            arr = None
        if arr is not None:
            mode = mode_of(arr.shape[1:])
            if mode is not None:
                return mode, arr if mode == "row" else list(arr)
    # A long list of Python values (or one that did not fit): a chunk of instances at a time through
    # the same conversion (no single step long enough to keep other threads, the IO loop's included,
    # waiting), and only a chunk it refuses, or that does not fit, instance by instance, to name the
    # first instance that does not fit.
    mode: str | None = None  # type: ignore[no-redef]
    blocks: list[np.ndarray] = []
    per_instance: list[np.ndarray] = []
    for start in range(0, len(values), CHUNK):
        pacing.let_others_run()
        chunk = values[start:start + CHUNK]
        try:
            block = try_array(chunk, dt, "instances")
        except InvalidInput:
            block = None
        this = mode_of(block.shape[1:]) if block is not None else None
        if block is not None and this is not None and mode in (None, this):
            mode = this
            (per_instance.extend if this == "whole" else blocks.append)(block)
            continue
        if isinstance(chunk, np.ndarray):
            chunk = chunk.tolist()
        for i, v in enumerate(chunk, start):
            where = f"instances[{i}]{suffix}"
            shape = walk_shape(v, dt, where)
            this = mode_of(shape)
            if this is None:
                raise InvalidInput(f"{where}: expected {_describe_expected(spec)}, got shape {fmt_shape(shape)}")
            if mode is None:
                mode = this
            elif this != mode:
                first = values[0].tolist() if isinstance(values, np.ndarray) else values[0]
                first_shape = walk_shape(first, dt, f"instances[0]{suffix}")
                raise InvalidInput(
                    f"{where}: mixed ranks: instances[0]{suffix} has shape {fmt_shape(first_shape)} "
                    f"({mode}) but {where} has shape {fmt_shape(shape)} ({this}); "
                    "send all instances as rows or all as whole tensors"
                )
            array = to_array(v, dt, where)
            if this == "whole":
                per_instance.append(array)
            else:
                blocks.append(array[np.newaxis])
    if mode == "whole":
        return "whole", per_instance
    if len({b.shape[1:] for b in blocks}) == 1:
        return "row", np.concatenate(blocks)
    return "row", to_array(values, dt, "instances")  # rows that fit one by one but not as one array: say where


def _decode_columns(inputs: Any, sig: Signature, max_instances: int) -> V1Request:
    named = isinstance(inputs, dict) and not _is_b64(inputs)
    if named:
        check_names(set(inputs), sig, "inputs")
        values = dict(inputs)
    elif len(sig.inputs) == 1:
        values = {sig.inputs[0].name: inputs}
    else:
        raise InvalidInput(
            f"inputs: expected an object with inputs {sig.input_names}, got {type(inputs).__name__}"
        )
    batch: Tensors = {}
    for name, value in values.items():
        spec = sig.input(name)
        where = f"inputs.{name}" if named else "inputs"
        arr = to_array(value, spec.dtype, where)
        if not fits(arr.shape, spec.shape):
            raise InvalidInput(
                f"{where}: expected shape {fmt_shape(spec.shape)} for input {name!r}, got {fmt_shape(arr.shape)}"
            )
        batch[name] = arr
    check_batch(batch, sig, "inputs", max_instances)
    return V1Request(COLUMNAR, [batch], named=named)


def _b64(name: str) -> bool:
    return name.endswith("_bytes")


def _one_or_named(out: Tensors, names: list[str], named: bool) -> Any:
    if not named:
        return jsonable(out[names[0]], b64=_b64(names[0]))
    return {n: jsonable(out[n], b64=_b64(n)) for n in names}


def encode(request: V1Request, results: list[Tensors], key: str = "predictions") -> dict[str, Any]:
    """The body for ``results`` (one per batch); ``key`` is ``predictions`` or ``explanations``.

    Predictions are named when the signature has several outputs; explanations (keyed by input)
    when the request named its inputs.
    """
    names = list(results[0])
    named = request.named if key == "explanations" else len(names) > 1
    if request.fmt == COLUMNAR:
        return {"outputs" if key == "predictions" else key: _one_or_named(results[0], names, named)}
    if request.whole:
        return {key: [_one_or_named(r, names, named) for r in results]}
    out = results[0]
    if not named:
        arr = out[names[0]]
        return {key: [arr.item()] if arr.ndim == 0 else jsonable(arr, b64=_b64(names[0]))}
    rows = request.rows
    for n in names:
        if out[n].ndim == 0 or out[n].shape[0] != rows:
            raise InvalidInput(
                f"output {n!r} has shape {fmt_shape(out[n].shape)}, not one row per instance ({rows}); "
                "use the columnar format ('inputs') for this signature"
            )
    cols = {n: jsonable(out[n], b64=_b64(n)) for n in names}
    return {key: [{n: cols[n][i] for n in names} for i in range(rows)]}
