"""A custom Python model for modelserver: a credit-risk score from three numbers, in plain numpy.

Serve it with ``modelserver serve examples/python-model --name risk``. Any code can stand behind
``predict`` (scikit-learn, XGBoost, a rules engine); its packages must be in the server's image.
"""

import json
import os

import numpy as np


class Model:
    # tensor name -> (V2 datatype, shape); -1 is any size, so requests carry any number of rows
    inputs = {"features": ("FP32", [-1, 3])}
    outputs = {"risk": ("FP32", [-1]), "decision": ("BYTES", [-1])}
    # rows are independent: concurrent requests may be merged into one predict call
    batchable = True
    # an example instance per input, for the home page's curl examples
    examples = {"features": [42.0, 52000.0, 0.31]}

    def load(self, model_dir: str) -> None:
        """Read the weights if the directory has them, else use the defaults."""
        self.weights = np.array([-0.02, -0.00002, 4.0], np.float32)
        self.bias = np.float32(0.0)
        path = os.path.join(model_dir, "weights.json")
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            self.weights = np.array(saved["weights"], np.float32)
            self.bias = np.float32(saved["bias"])

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """features: age, income, debt ratio -> risk in (0, 1) and a decision."""
        z = inputs["features"] @ self.weights + self.bias
        risk = 1.0 / (1.0 + np.exp(-z))
        decision = np.where(risk > 0.5, b"refer", b"approve")
        return {"risk": risk.astype(np.float32), "decision": decision.astype(object)}

    def explain(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each feature's share of the score's logit: its value times its weight."""
        return {"features": inputs["features"] * self.weights}
