"""Build the benchmark models as SavedModels: a Keras MLP 32-256-256-10 and a small image model.

Run with any Python that has TensorFlow: ``python bench/models.py OUT_DIR``. Each model is written
to ``OUT_DIR/<name>/1`` (TensorFlow Serving's layout) with one ``serving_default`` signature whose
input is ``x`` (float32, batch dimension free) and output ``y``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

MODELS = {
    # name: (input shape without the batch dimension, builder)
    "mlp": (32,),
    "mnist": (28, 28, 1),
}


def _keras_model(name: str) -> tf.keras.Model:
    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    if name == "mlp":
        inputs = tf.keras.Input(shape=(32,))
        h = layers.Dense(256, activation="relu")(inputs)
        h = layers.Dense(256, activation="relu")(h)
        out = layers.Dense(10, activation="softmax")(h)
    else:
        inputs = tf.keras.Input(shape=(28, 28, 1))
        h = layers.Conv2D(8, 3, activation="relu")(inputs)
        h = layers.MaxPooling2D()(h)
        h = layers.Flatten()(h)
        h = layers.Dense(64, activation="relu")(h)
        out = layers.Dense(10, activation="softmax")(h)
    return tf.keras.Model(inputs, out)


def build(name: str, out_dir: Path) -> Path:
    path = out_dir / name / "1"
    if (path / "saved_model.pb").is_file():
        return path
    model = _keras_model(name)
    shape = MODELS[name]

    @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": model(x, training=False)}

    module = tf.Module()
    module.model = model
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return path


def main() -> None:
    out = Path(sys.argv[1])
    for name in MODELS:
        print(build(name, out))


if __name__ == "__main__":
    main()
