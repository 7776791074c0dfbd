"""Real TensorFlow SavedModels built by the tests, each small and made to exercise one behaviour."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402


def _save(module: tf.Module, path: Path, signatures: dict) -> Path:
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def multi_dtype(path: Path) -> Path:
    """Named inputs of four dtypes; outputs of float, int, bool and string dtypes."""

    class M(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 3], tf.float32, name="x"),
                tf.TensorSpec([None], tf.int64, name="k"),
                tf.TensorSpec([None], tf.string, name="text"),
                tf.TensorSpec([None], tf.bool, name="flag"),
            ]
        )
        def serve(self, x, k, text, flag):
            total = tf.reduce_sum(x, axis=1) * tf.cast(k, tf.float32)
            return {
                "total": total,
                "doubled": k * 2,
                "negated": tf.logical_not(flag),
                "shout": tf.strings.join([tf.strings.upper(text), "!"]),
                "length": tf.strings.length(text),
            }

    m = M()
    return _save(m, path, {"serving_default": m.serve})


def scaled(path: Path, factor: float) -> Path:
    """y = factor * x for x of shape [-1, 2]: versions tell themselves apart by their factor."""

    class M(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f = tf.Variable(factor)

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * self.f}

    m = M()
    return _save(m, path, {"serving_default": m.serve})


def versioned(base: Path) -> Path:
    """A base directory with versions 1 (y = x) and 2 (y = 2x)."""
    scaled(base / "1", 1.0)
    scaled(base / "2", 2.0)
    return base


def slow(path: Path, seconds: float) -> Path:
    """Busy-waits ``seconds`` inside the graph, then returns x + 1."""

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x):
            start = tf.timestamp()
            (spins,) = tf.while_loop(
                lambda t: tf.timestamp() - start < seconds, lambda t: [t + 1.0], [tf.constant(0.0, tf.float64)]
            )
            return {"y": x + 1.0 + tf.cast(spins * 0.0, tf.float32)}

    m = M()
    return _save(m, path, {"serving_default": m.serve})


def picky(path: Path) -> Path:
    """y = sqrt(x), refusing negative inputs at run time (an error only the model can find)."""

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def serve(self, x):
            with tf.control_dependencies([tf.debugging.assert_non_negative(x, message="x must be >= 0")]):
                return {"y": tf.sqrt(x)}

    m = M()
    return _save(m, path, {"serving_default": m.serve})


def scalar_out(path: Path) -> Path:
    """Sums its whole input to one number (an output with no batch dimension)."""

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def serve(self, x):
            return {"total": tf.reduce_sum(x)}

    m = M()
    return _save(m, path, {"serving_default": m.serve})


def int_only(path: Path) -> Path:
    """Integer input only: explain has nothing to attribute."""

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="ids")])
        def serve(self, ids):
            return {"next": ids + 1}

    m = M()
    return _save(m, path, {"serving_default": m.serve})


def in_process(path: Path, signature: str = "serving_default", **inputs):
    """Call a SavedModel's signature in this process, as the reference for server answers."""
    fn = tf.saved_model.load(str(path)).signatures[signature]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
