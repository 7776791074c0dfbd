"""Real TensorFlow SavedModels built by the tests, each small and made to exercise one behaviour."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402


def _spec(shape: list[int | None], dtype: tf.DType, name: str) -> tf.TensorSpec:
    return tf.TensorSpec(shape, dtype, name=name)


def _save(path: Path, specs: list[tf.TensorSpec], fn: Callable, **variables: tf.Variable) -> Path:
    """Save ``fn`` (returning a dict of named outputs) as the model's ``serving_default``."""
    module = tf.Module()
    for name, var in variables.items():
        setattr(module, name, var)
    module.serve = tf.function(fn, input_signature=specs)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def multi_dtype(path: Path) -> Path:
    """Named inputs of four dtypes; outputs of float, int, bool and string dtypes."""

    def serve(x, k, text, flag):
        return {
            "total": tf.reduce_sum(x, axis=1) * tf.cast(k, tf.float32),
            "doubled": k * 2,
            "negated": tf.logical_not(flag),
            "shout": tf.strings.join([tf.strings.upper(text), "!"]),
            "length": tf.strings.length(text),
        }

    specs = [
        _spec([None, 3], tf.float32, "x"),
        _spec([None], tf.int64, "k"),
        _spec([None], tf.string, "text"),
        _spec([None], tf.bool, "flag"),
    ]
    return _save(path, specs, serve)


def scaled(path: Path, factor: float) -> Path:
    """y = factor * x for x of shape [-1, 2]: versions tell themselves apart by their factor."""
    f = tf.Variable(factor)
    return _save(path, [_spec([None, 2], tf.float32, "x")], lambda x: {"y": x * f}, f=f)


def versioned(base: Path) -> Path:
    """A base directory with versions 1 (y = x) and 2 (y = 2x)."""
    scaled(base / "1", 1.0)
    scaled(base / "2", 2.0)
    return base


def slow(path: Path, seconds: float) -> Path:
    """Busy-waits ``seconds`` inside the graph, then returns x + 1."""

    def serve(x):
        start = tf.timestamp()
        (spins,) = tf.while_loop(
            lambda t: tf.timestamp() - start < seconds, lambda t: [t + 1.0], [tf.constant(0.0, tf.float64)]
        )
        return {"y": x + 1.0 + tf.cast(spins * 0.0, tf.float32)}

    return _save(path, [_spec([None, 1], tf.float32, "x")], serve)


def picky(path: Path) -> Path:
    """y = sqrt(x), refusing negative inputs at run time (an error only the model can find)."""

    def serve(x):
        with tf.control_dependencies([tf.debugging.assert_non_negative(x, message="x must be >= 0")]):
            return {"y": tf.sqrt(x)}

    return _save(path, [_spec([None, 2], tf.float32, "x")], serve)


def needs_positive(path: Path) -> Path:
    """Refuses zeros, so the warm-up inference (all zeros) fails and the server must stay not ready."""

    def serve(x):
        with tf.control_dependencies([tf.debugging.assert_positive(x, message="x must be > 0")]):
            return {"y": tf.math.log(x)}

    return _save(path, [_spec([None, 2], tf.float32, "x")], serve)


def scalar_out(path: Path) -> Path:
    """Sums its whole input to one number (an output with no batch dimension)."""
    return _save(path, [_spec([None, 2], tf.float32, "x")], lambda x: {"total": tf.reduce_sum(x)})


def int_only(path: Path) -> Path:
    """Integer input only: explain has nothing to attribute."""
    return _save(path, [_spec([None], tf.int32, "ids")], lambda ids: {"next": ids + 1})


def in_process(path: Path, signature: str = "serving_default", **inputs):
    """Call a SavedModel's signature in this process, as the reference for server answers."""
    fn = tf.saved_model.load(str(path)).signatures[signature]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def weighted(path: Path, megabytes: float, factor: float = 1.0) -> Path:
    """y = factor * x for x of shape [-1, 2], carrying ``megabytes`` of float32 weights (all zero but
    the first), so its size on disk and in memory is mostly those weights."""
    n = max(1, int(megabytes * 1024 * 1024 / 4))
    w = tf.Variable(tf.concat([[factor], tf.zeros([n - 1])], 0))
    return _save(path, [_spec([None, 2], tf.float32, "x")], lambda x: {"y": x * w[0]}, w=w)
