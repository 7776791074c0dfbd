"""Custom Python models: a directory whose ``model.py`` defines ``class Model``.

The contract (see the README's "Custom Python models")::

    class Model:
        inputs = {"x": ("FP32", [-1, 4])}       # tensor name -> (V2 datatype, shape); -1: any size
        outputs = {"y": ("FP32", [-1, 3])}
        batchable = True                       # optional: rows are independent, requests may merge

        def load(self, model_dir: str) -> None: ...
        def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
        def explain(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...   # optional

The declared inputs and outputs are the model's one signature (``serving_default``), so requests
are decoded and checked against them like a SavedModel's. What ``predict`` returns is checked too:
a missing or extra name, a dtype that does not convert, or a row count that differs from the
request's is the model's fault, answered 500 with a message that says so (``ModelFailed``).

The code is trusted: it runs inside the server process with the server's permissions. Its
dependencies come with the image (a derived image); nothing is installed at run time.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np

from modelserver import dtypes
from modelserver.errors import InvalidInput, ModelFailed, ModelLoadError, ModelServerError
from modelserver.interface import Signature, Tensors, TensorSpec

MODEL_FILE = "model.py"
CLASS_NAME = "Model"
SIGNATURE = "serving_default"
_loaded = itertools.count(1)


def _tensor_specs(declared: Any, what: str, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(declared, dict) or not declared:
        raise ModelLoadError(
            f"{where}: Model.{what} must be a dict of tensor name -> (datatype, shape), for example "
            f"{{'x': ('FP32', [-1, 4])}}; got {declared!r}"
        )
    specs = []
    for name, value in declared.items():
        ok = isinstance(name, str) and isinstance(value, (tuple, list)) and len(value) == 2
        datatype, shape = value if ok else (None, None)
        if not ok or not isinstance(datatype, str) or dtypes.from_v2(datatype) is None:
            raise ModelLoadError(
                f"{where}: Model.{what}[{name!r}] must be (datatype, shape) with a V2 datatype (BOOL, UINT8..64, "
                f"INT8..64, FP16, FP32, FP64, BYTES); got {value!r}"
            )
        if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            raise ModelLoadError(f"{where}: Model.{what}[{name!r}] shape must be a list of sizes (-1: any); got {shape!r}")
        specs.append(TensorSpec(name, datatype, tuple(shape)))
    return tuple(specs)


class PythonServable:
    """A ``Model`` instance from a ``model.py``, behind the declared signature."""

    platform = "python"

    def __init__(self, name: str, version: int, path: Path) -> None:
        self.name, self.version, self.path = name, version, path
        where = str(path / MODEL_FILE)
        module_name = f"modelserver_user_model_{next(_loaded)}"
        spec = importlib.util.spec_from_file_location(module_name, path / MODEL_FILE)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look classes up here
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ModelLoadError(f"{where} failed to import: {type(e).__name__}: {e}") from e
        cls = getattr(module, CLASS_NAME, None)
        if not isinstance(cls, type):
            raise ModelLoadError(f"{where} defines no class {CLASS_NAME} (the class the server instantiates)")
        if not callable(getattr(cls, "predict", None)):
            raise ModelLoadError(f"{where}: {CLASS_NAME} has no predict(self, inputs) method")
        inputs = _tensor_specs(getattr(cls, "inputs", None), "inputs", where)
        outputs = _tensor_specs(getattr(cls, "outputs", None), "outputs", where)
        batchable = bool(getattr(cls, "batchable", False))
        self.signatures = {SIGNATURE: Signature(SIGNATURE, inputs, outputs, batchable=batchable)}
        self.examples: dict[str, Any] = dict(getattr(cls, "examples", None) or {})
        try:
            self.model = cls()
            load = getattr(self.model, "load", None)
            if callable(load):
                load(str(path))
        except Exception as e:
            raise ModelLoadError(f"{CLASS_NAME}.load of {where} failed: {type(e).__name__}: {e}") from e

    def _fault(self, method: str, what: str) -> ModelFailed:
        return ModelFailed(f"model {self.name!r}: {method} {what} (an error in the model's code, not in the request)")

    def _run(self, method: str, inputs: Tensors) -> Any:
        """Call the model's ``method``; anything it raises (but our own errors) is the model's fault."""
        try:
            return getattr(self.model, method)(dict(inputs))
        except ModelServerError:
            raise
        except Exception as e:
            raise self._fault(method, f"raised {type(e).__name__}: {e}") from e

    def predict(self, signature: str, inputs: Tensors) -> Tensors:
        """The model's predict, its outputs checked against the declared ones."""
        out = self._run("predict", inputs)
        expected = self.signatures[SIGNATURE].outputs
        want = [t.name for t in expected]
        if not isinstance(out, dict) or sorted(map(str, out)) != sorted(want):
            raise self._fault("predict", f"returned {_keys(out)}, expected a dict of the outputs {want}")
        rows = next((a.shape[0] for a in inputs.values() if a.ndim), None)
        result: Tensors = {}
        for spec in expected:
            value = out[spec.name]
            try:
                arr = np.asarray(value, dtype=spec.dtype.numpy)
            except (TypeError, ValueError) as e:
                raise self._fault("predict", f"returned {spec.name!r} that is not {spec.datatype}: {e}") from None
            shape = list(arr.shape)
            if spec.shape is not None and (
                arr.ndim != len(spec.shape) or any(d not in (-1, a) for d, a in zip(spec.shape, arr.shape))
            ):
                raise self._fault("predict", f"returned {spec.name!r} of shape {shape}, declared {list(spec.shape)}")
            if spec.batched and rows is not None and arr.shape[0] != rows:
                raise self._fault("predict", f"returned {arr.shape[0]} rows of {spec.name!r} for {rows} input rows")
            result[spec.name] = arr
        return result

    def explain(self, signature: str, inputs: Tensors, *, target: str | None, steps: int) -> Tensors:
        """The model's own attributions: for some or all inputs, each shaped like its input."""
        if not callable(getattr(self.model, "explain", None)):
            raise InvalidInput(f"model {self.name!r} has no explanations: its Model class defines no explain method")
        if target is not None:  # the model's explain has no target to pass it to: refuse, do not ignore
            raise InvalidInput(f"target: model {self.name!r} explains with its own method, which takes no target; "
                               f"got {target!r}")
        out = self._run("explain", inputs)
        if not isinstance(out, dict) or not out or not set(map(str, out)) <= set(inputs):
            raise self._fault("explain", f"returned {_keys(out)}, expected a dict keyed by some of the inputs {sorted(inputs)}")
        result: Tensors = {}
        for name, value in out.items():
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise self._fault("explain", f"returned {name!r} that is not numbers: {e}") from None
            if arr.shape != inputs[name].shape:
                raise self._fault("explain", f"returned {name!r} of shape {list(arr.shape)} for an input of shape "
                                  f"{list(inputs[name].shape)}")
            result[str(name)] = arr.astype(np.float32)
        return result


def load_python(name: str, version: int, path: Path) -> PythonServable:
    return PythonServable(name, version, path)


def _keys(out: Any) -> str:
    return f"outputs {sorted(map(str, out))}" if isinstance(out, dict) else f"a {type(out).__name__}"
