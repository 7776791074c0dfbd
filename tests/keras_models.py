"""Keras model files built by the tests: functional with named inputs and outputs, Sequential in the
legacy HDF5 format, and one with a custom layer that must be registered to load."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402


def two_inputs(path: Path, seed: int = 0) -> Path:
    """Inputs ``age`` [-1, 1] and ``features`` [-1, 3]; outputs ``score`` [-1, 1] and ``proba`` [-1, 3]."""
    keras.utils.set_random_seed(seed)
    age = keras.Input(shape=(1,), name="age")
    features = keras.Input(shape=(3,), name="features")
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden")(keras.layers.Concatenate()([age, features]))
    score = keras.layers.Dense(1, name="score")(hidden)
    proba = keras.layers.Dense(3, activation="softmax", name="proba")(hidden)
    model = keras.Model(inputs=[age, features], outputs=[score, proba])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def sequential_h5(path: Path, seed: int = 1) -> Path:
    """A Sequential classifier of 4 features into 3 classes, saved in the legacy HDF5 format."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(6, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


CUSTOM_LAYER = textwrap.dedent('''
    import keras


    @keras.saving.register_keras_serializable(package="tests")
    class TimesTwoPlus(keras.layers.Layer):
        def __init__(self, offset=1.0, **kwargs):
            super().__init__(**kwargs)
            self.offset = offset

        def call(self, x):
            return x * 2.0 + self.offset

        def get_config(self):
            return {**super().get_config(), "offset": self.offset}
''')


def with_custom_layer(path: Path, module_dir: Path, module: str = "mylayers") -> Path:
    """y = 2x + 0.5 through a registered custom layer, defined in ``module_dir/module.py``."""
    import importlib.util

    module_dir.mkdir(parents=True, exist_ok=True)
    source = module_dir / f"{module}.py"
    source.write_text(CUSTOM_LAYER)
    spec = importlib.util.spec_from_file_location(module, source)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = keras.Input(shape=(2,), name="x")
    model = keras.Model(x, mod.TimesTwoPlus(offset=0.5, name="y")(x))
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def predict(path: Path, *inputs: np.ndarray) -> list[np.ndarray]:
    """The model's own ``predict``, in this process."""
    model = keras.saving.load_model(str(path), compile=False)
    out = model.predict(list(inputs) if len(inputs) > 1 else inputs[0], verbose=0)
    return [np.asarray(o) for o in (out if isinstance(out, list) else [out])]
