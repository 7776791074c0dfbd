"""Custom Python model directories written by the tests, following the ``model.py`` contract."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

LINEAR = textwrap.dedent('''
    """A linear classifier in plain numpy: weights from the model directory."""
    import os

    import numpy as np


    class Model:
        inputs = {"x": ("FP32", [-1, 4])}
        outputs = {"scores": ("FP32", [-1, 3]), "label": ("INT64", [-1])}
        batchable = True

        def load(self, model_dir):
            self.w = np.load(os.path.join(model_dir, "weights.npy"))
            self.b = np.load(os.path.join(model_dir, "bias.npy"))

        def predict(self, inputs):
            scores = inputs["x"] @ self.w + self.b
            return {"scores": scores.astype(np.float32), "label": scores.argmax(axis=1)}

        def explain(self, inputs):
            x = inputs["x"]
            label = (x @ self.w + self.b).argmax(axis=1)
            return {"x": x * self.w[:, label].T}
''')

BROKEN = textwrap.dedent('''
    import numpy as np


    class Model:
        inputs = {"x": ("FP32", [-1, 2])}
        outputs = {"y": ("FP32", [-1, 2])}

        def predict(self, inputs):
            x = inputs["x"]
            if (x[:, 0] == 1).any():
                raise ZeroDivisionError("division by zero in the model's own code")
            if (x[:, 0] == 2).any():
                return {"why": x}
            if (x[:, 0] == 3).any():
                return {"y": x[:1]}
            if (x[:, 0] == 4).any():
                return {"y": np.array([["a", "b"]] * len(x))}
            return {"y": x * 10}
''')

FAILS_TO_LOAD = textwrap.dedent('''
    class Model:
        inputs = {"x": ("FP32", [-1, 2])}
        outputs = {"y": ("FP32", [-1, 2])}

        def load(self, model_dir):
            raise FileNotFoundError("tokenizer.bin is missing from " + model_dir)

        def predict(self, inputs):
            return inputs
''')


def write(path: Path, source: str, **arrays: np.ndarray) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.py").write_text(source)
    for name, arr in arrays.items():
        np.save(path / f"{name}.npy", arr)
    return path


def linear(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return write(path, LINEAR, weights=rng.normal(size=(4, 3)).astype(np.float32),
                 bias=rng.normal(size=3).astype(np.float32))


def instance(path: Path) -> Any:
    """The directory's ``Model``, loaded in this process, to compare answers with."""
    spec = importlib.util.spec_from_file_location(f"test_model_{abs(hash(path))}", path / "model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Model()
    model.load(str(path))
    return model
