"""TensorFlow runtime: a model as TensorFlow functions with named inputs and outputs, run and explained.

``TFServable`` serves any set of such functions (one per signature); ``load_savedmodel`` makes one
from a SavedModel's serving signatures, and the Keras runtime from a traced Keras model.
``predict`` and ``explain`` block and are called from the dispatcher's executor threads
(TensorFlow releases the GIL while it computes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelserver import dtypes
from modelserver.errors import InvalidInput, ModelLoadError
from modelserver.interface import Signature, Tensors, TensorSpec, get_signature

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

#: a model may ship example inputs here (one instance per input name), used by the home page
EXAMPLES_FILE = "assets.extra/modelserver_examples.json"
#: rows per model call while explaining (interpolation steps x batch rows)
EXPLAIN_ROWS_PER_CALL = 2048


def _spec(name: str, shape: tf.TensorShape, dtype: tf.DType) -> TensorSpec:
    dims = None if shape.rank is None else tuple(-1 if d is None else int(d) for d in shape)
    return TensorSpec(name=name, datatype=dtypes.from_tf(dtype.name).v2, shape=dims)


def _describe(name: str, fn: Any) -> Signature:
    _, kwargs = fn.structured_input_signature
    inputs = tuple(_spec(k, v.shape, v.dtype) for k, v in sorted(kwargs.items()))
    outs = fn.structured_outputs
    if not isinstance(outs, dict):
        raise ModelLoadError(f"signature {name!r} must return a dict of named outputs")
    outputs = tuple(_spec(k, v.shape, v.dtype) for k, v in sorted(outs.items()))
    return Signature(name=name, inputs=inputs, outputs=outputs)


Call = Callable[[dict[str, tf.Tensor]], Any]


def _fits(shape: tf.TensorShape, spec: TensorSpec) -> bool:
    if spec.shape is None:
        return True
    dims = shape.as_list()
    return len(dims) == len(spec.shape) and all(s == -1 or s == d for d, s in zip(dims, spec.shape))


def _flat_call(fn: Any, sig: Signature) -> Call:
    """A signature's call that binds nothing per call: the public one, or its flat entry point.

    Calling a loaded signature binds its keyword arguments against the function's declared
    parameters and collects the captured variables' handles on every call, about a fifth of a
    small model's call time. Both are the same for every call, so this does them once and calls
    the function's flat entry point with tensors in parameter order. Inputs whose shape does not
    fit the signature go through the public call, which checks them and says what is wrong. When
    this TensorFlow's functions lack that entry point, or capture resources that are only resolved
    at call time, the public call is used.
    """

    def public(feed: dict[str, tf.Tensor]) -> Any:
        return fn(**feed)

    try:
        call_flat = fn._call_flat
        order = list(fn.function_type.parameters)
        deferred = any(callable(c) for c in fn._captured_inputs)
        captured = list(fn.captured_inputs)
    except (AttributeError, TypeError):
        return public
    specs = [sig.input(name) for name in order] if sorted(order) == sorted(sig.input_names) else None
    if deferred or specs is None:
        return public

    def flat(feed: dict[str, tf.Tensor]) -> Any:
        args = [feed[spec.name] for spec in specs]
        if not all(_fits(a.shape, spec) for a, spec in zip(args, specs)):
            return fn(**feed)
        return call_flat(args, captured)

    return flat


class TFServable:
    """One loaded model version: TensorFlow functions by signature name.

    Each function takes its inputs as keyword arguments and returns a dict of named outputs, as a
    SavedModel's serving signatures do. ``owner`` (kept as ``_model``) is what they belong to.
    """

    def __init__(
        self, name: str, version: int, path: Path, fns: dict[str, Any], *, platform: str, owner: Any = None
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.platform = platform
        self._model = owner  # what the functions belong to (the SavedModel, the Keras model)
        self._fns = fns
        self.signatures = {k: _describe(k, fn) for k, fn in self._fns.items()}
        self._calls = {k: _flat_call(fn, self.signatures[k]) for k, fn in self._fns.items()}
        self._dtypes = {
            k: {t.name: tf.as_dtype(t.dtype.tf_name) for t in sig.inputs}
            for k, sig in self.signatures.items()
        }
        self.examples = self._read_examples(path) if path.is_dir() else {}

    @staticmethod
    def _read_examples(path: Path) -> dict[str, Any]:
        f = path / EXAMPLES_FILE
        if not f.is_file():
            return {}
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _feed(self, signature: str, inputs: Tensors) -> dict[str, tf.Tensor]:
        types = self._dtypes[signature]
        return {k: tf.constant(v, dtype=types[k]) for k, v in inputs.items()}

    def predict(self, signature: str, inputs: Tensors) -> Tensors:
        call = self._calls[signature]
        try:
            out = call(self._feed(signature, inputs))
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise InvalidInput(f"the model rejected the input: {_first_line(e)}") from e
        return {k: v.numpy() for k, v in out.items()}

    def explain(
        self, signature: str, inputs: Tensors, *, target: str | None, steps: int
    ) -> Tensors:
        """Integrated gradients from a zero baseline, for every float input.

        The score explained is, per row, the target output's value at the class the model
        predicts for that row (its argmax), or the value itself for a one-number-per-row output.
        """
        sig = get_signature(self, signature)
        fn = self._fns[signature]
        floats = [t.name for t in sig.inputs if t.dtype.is_float]
        if not floats:
            raise InvalidInput(
                "explain needs at least one float input; signature "
                f"{signature!r} takes {', '.join(f'{t.name} ({t.datatype})' for t in sig.inputs)}"
            )
        out = sig.output(target) if target else next(
            (t for t in sig.outputs if t.dtype.is_float), None
        )
        if out is None or not out.dtype.is_float:
            raise InvalidInput(f"explain needs a float output to explain; signature {signature!r} has none")
        batched = all(sig.input(n).batched for n in inputs) and out.batched
        rows = int(next(iter(inputs.values())).shape[0]) if inputs else 1
        pred = np.asarray(self.predict(signature, inputs)[out.name])
        cls = np.argmax(pred.reshape(rows, -1), axis=1) if batched and pred.ndim >= 2 else None

        alphas = (np.arange(steps, dtype=np.float64) + 0.5) / steps
        per_call = max(1, EXPLAIN_ROWS_PER_CALL // max(rows, 1)) if batched else 1
        totals = {n: np.zeros(inputs[n].shape, dtype=np.float64) for n in floats}
        for start in range(0, steps, per_call):
            chunk = alphas[start : start + per_call]
            k = len(chunk)
            feed_np: Tensors = {}
            for name, arr in inputs.items():
                if name in totals:
                    scale = chunk.reshape((k,) + (1,) * arr.ndim).astype(arr.dtype)
                    scaled = arr[None] * scale
                    feed_np[name] = scaled.reshape((k * arr.shape[0],) + arr.shape[1:]) if batched else scaled[0]
                else:
                    feed_np[name] = np.concatenate([arr] * k) if batched else arr
            feed = self._feed(signature, feed_np)
            with tf.GradientTape() as tape:
                watched = [feed[n] for n in floats]
                for t in watched:
                    tape.watch(t)
                y = fn(**feed)[out.name]
                if batched and cls is not None:
                    flat = tf.reshape(y, (k * rows, -1))
                    score = tf.reduce_sum(tf.gather(flat, np.tile(cls, k), axis=1, batch_dims=1))
                else:
                    score = tf.reduce_sum(y)
            grads = tape.gradient(score, watched)
            for name, g in zip(floats, grads):
                if g is None:
                    raise InvalidInput(
                        f"output {out.name!r} is not differentiable with respect to input {name!r}"
                    )
                g_np = g.numpy().astype(np.float64)
                totals[name] += g_np.reshape((k,) + inputs[name].shape).sum(axis=0) if batched else g_np
        return {n: (inputs[n].astype(np.float64) * totals[n] / steps).astype(inputs[n].dtype) for n in floats}


_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "[[{{node", "File ")


def start_runtime() -> None:
    """Start what TensorFlow starts once a process (its thread pools, allocators and the tracing of
    functions): a model repository counts that as the server's own memory, not the first model's."""
    double = tf.function(lambda a: a * 2.0, autograph=False)
    double(tf.constant([1.0]))


def set_threads(n: int) -> None:
    """Size TensorFlow's intra-op and inter-op thread pools; before the first TensorFlow op runs."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError as e:  # TensorFlow has already started in this process: the pools are fixed
        raise ModelLoadError(f"cannot size TensorFlow's thread pools now: {e}") from e


def _first_line(e: BaseException) -> str:
    """The line of a TensorFlow error that says what went wrong, without graph tracebacks."""
    text = getattr(e, "message", None) or str(e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(_NOISE)]
    return (useful or lines or [type(e).__name__])[0]


def load_savedmodel(name: str, version: int, path: Path) -> TFServable:
    """A SavedModel directory's serving signatures."""
    try:
        model = tf.saved_model.load(str(path))
    except Exception as e:  # TensorFlow raises many kinds for a broken directory
        raise ModelLoadError(f"cannot load SavedModel at {path}: {e}") from e
    fns: dict[str, Any] = dict(model.signatures)
    if not fns:
        raise ModelLoadError(f"SavedModel at {path} has no serving signatures")
    return TFServable(name, version, path, fns, platform="tensorflow_savedmodel", owner=model)
