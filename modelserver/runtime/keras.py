"""Keras model files (``.keras``, and legacy ``.h5``) served directly, on TensorFlow.

The file is loaded with ``keras.saving.load_model`` (not compiled). Its inputs and outputs, named
as the model names them, become one signature, ``serving_default``; the model is traced once into
a TensorFlow function of that signature, so calls, batching and explanations are the TensorFlow
runtime's own (``tensorflow.TFServable``).

A model with custom layers loads when the classes are registered with
``@keras.saving.register_keras_serializable()`` in a module the server imports first
(``--imports``); otherwise loading fails with a message naming the class.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from modelserver.errors import ModelLoadError
from modelserver.runtime.tensorflow import TFServable, tf

SIGNATURE = "serving_default"
_MISSING = re.compile(r"Could not locate (?:class|function) '([^']+)'|Unknown (?:layer|object|class)[^']*'([^']+)'")


def _load_error(file: Path, e: Exception) -> ModelLoadError:
    text = str(e)
    m = _MISSING.search(text)
    if m:
        cls = m.group(1) or m.group(2)
        return ModelLoadError(
            f"cannot load {file.name}: it uses the custom class {cls!r}, which is not registered. Decorate "
            f"{cls} with @keras.saving.register_keras_serializable() in a Python module, and name that "
            "module in --imports (MODELSERVER_IMPORTS) so the server imports it before loading models"
        )
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(e).__name__)
    return ModelLoadError(f"cannot load Keras model {file}: {first}")


def _names(tensors: list[Any], given: list[str] | None, prefix: str) -> list[str]:
    names = list(given) if given and len(given) == len(tensors) else [
        str(getattr(t, "name", "") or f"{prefix}_{i}") for i, t in enumerate(tensors)
    ]
    if len(set(names)) != len(names):
        names = [f"{prefix}_{i}" for i in range(len(tensors))]
    return names


def load_keras(name: str, version: int, file: Path) -> TFServable:
    """A Keras model file as a servable with one signature."""
    import keras

    try:
        model = keras.saving.load_model(str(file), compile=False)
    except Exception as e:  # Keras raises many kinds for a file it cannot read
        raise _load_error(file, e) from e
    try:
        inputs = list(model.inputs)
        outputs = list(model.outputs)
    except (AttributeError, TypeError, ValueError):
        inputs = outputs = []
    if not inputs or not outputs:
        raise ModelLoadError(
            f"{file.name}: the model declares no inputs and outputs (a subclassed model that was never built "
            "on an input); save a functional or Sequential model, or export it with model.export(DIR)"
        )
    in_names = _names(inputs, getattr(model, "input_names", None), "input")
    out_names = _names(outputs, getattr(model, "output_names", None), "output")
    specs = {
        n: tf.TensorSpec(tuple(t.shape), tf.as_dtype(str(getattr(t.dtype, "name", t.dtype))), name=n)
        for n, t in zip(in_names, inputs)
    }

    def serve(**feed: tf.Tensor) -> dict[str, tf.Tensor]:
        args = [feed[n] for n in in_names]
        out = model(args if len(args) > 1 else args[0], training=False)
        if isinstance(out, dict):
            return {str(k): v for k, v in out.items()}
        if isinstance(out, (list, tuple)):
            return dict(zip(out_names, out))
        return {out_names[0]: out}

    try:
        fn = tf.function(serve).get_concrete_function(**specs)
    except Exception as e:  # tracing runs the model's own code
        raise ModelLoadError(f"{file.name}: cannot trace the model on its declared inputs: {e}") from e
    return TFServable(name, version, file, {SIGNATURE: fn}, platform="keras", owner=model)
