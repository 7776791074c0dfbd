"""The bundled demo model: an iris classifier trained at first use and saved as a real SavedModel.

Fisher's iris measurements (150 rows, in ``iris.csv``) train a small 4-16-3 network with plain
numpy, deterministically; the weights go into a ``tf.Module`` with two signatures:

- ``serving_default``: ``features`` FP32 [-1, 4] -> ``probabilities`` FP32 [-1, 3]
- ``classify``: the same input -> ``probabilities``, ``class_id`` INT64 [-1], ``class_name`` BYTES [-1]
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

CLASSES = ("setosa", "versicolor", "virginica")
EXAMPLE = [5.1, 3.5, 1.4, 0.2]
HIDDEN = 16


def default_dir() -> Path:
    """Where the demo lives: ``$MODELSERVER_DEMO_DIR``, else under the user's cache directory."""
    env = os.environ.get("MODELSERVER_DEMO_DIR")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "modelserver" / "demo" / "iris"


def load_data() -> tuple[np.ndarray, np.ndarray]:
    raw = np.loadtxt(Path(__file__).with_name("iris.csv"), delimiter=",", skiprows=1)
    return raw[:, :4].astype(np.float32), raw[:, 4].astype(np.int64)


def train(x: np.ndarray, y: np.ndarray, steps: int = 3000, lr: float = 0.1) -> dict[str, np.ndarray]:
    """Full-batch gradient descent on softmax cross-entropy; the same weights on every machine."""
    rng = np.random.default_rng(0)
    mean, std = x.mean(axis=0), x.std(axis=0)
    xs = (x - mean) / std
    w1 = rng.normal(0, 0.5, (4, HIDDEN))
    b1 = np.zeros(HIDDEN)
    w2 = rng.normal(0, 0.5, (HIDDEN, 3))
    b2 = np.zeros(3)
    onehot = np.eye(3)[y]
    for _ in range(steps):
        h = np.tanh(xs @ w1 + b1)
        logits = h @ w2 + b2
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(x)
        gw2, gb2 = h.T @ g, g.sum(axis=0)
        gh = (g @ w2.T) * (1 - h**2)
        gw1, gb1 = xs.T @ gh, gh.sum(axis=0)
        w1 -= lr * gw1
        b1 -= lr * gb1
        w2 -= lr * gw2
        b2 -= lr * gb2
    return {k: v.astype(np.float32) for k, v in dict(mean=mean, std=std, w1=w1, b1=b1, w2=w2, b2=b2).items()}


def build(target: Path) -> Path:
    """Train and save the demo SavedModel as version 1 under ``target``; returns ``target``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    x, y = load_data()
    w = train(x, y)

    class Iris(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.v = {k: tf.Variable(v, trainable=False, name=k) for k, v in w.items()}
            self.names = tf.constant(CLASSES)

        def _probs(self, features: tf.Tensor) -> tf.Tensor:
            v = self.v
            h = tf.tanh(((features - v["mean"]) / v["std"]) @ v["w1"] + v["b1"])
            return tf.nn.softmax(h @ v["w2"] + v["b2"])

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
        def predict(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"probabilities": self._probs(features)}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
        def classify(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
            probs = self._probs(features)
            cls = tf.argmax(probs, axis=1)
            return {"probabilities": probs, "class_id": cls, "class_name": tf.gather(self.names, cls)}

    module = Iris()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        version = Path(tmp) / "model" / "1"
        tf.saved_model.save(
            module, str(version), signatures={"serving_default": module.predict, "classify": module.classify}
        )
        extra = version / "assets.extra"
        extra.mkdir()
        (extra / "modelserver_examples.json").write_text(json.dumps({"features": EXAMPLE}))
        if target.exists():
            return target  # another process finished first
        os.replace(version.parent, target)
    return target


def ensure(target: Path | None = None) -> Path:
    """The demo model directory, built first if it is not there yet."""
    target = target or default_dir()
    if not (target / "1" / "saved_model.pb").is_file():
        build(target)
    return target
