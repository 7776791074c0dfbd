"""The MLServer side of the benchmark: a custom ``MLModel`` runtime serving a SavedModel's default signature.

``bench/run.py`` copies this file into an MLServer model folder as ``runtime.py`` and points the
model's settings at ``runtime.SavedModelRuntime`` with ``parameters.uri`` set to the SavedModel.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from mlserver import MLModel  # noqa: E402
from mlserver.codecs import NumpyCodec  # noqa: E402
from mlserver.types import InferenceRequest, InferenceResponse  # noqa: E402


class SavedModelRuntime(MLModel):
    async def load(self) -> bool:
        uri = self.settings.parameters.uri
        self.fn = tf.saved_model.load(uri).signatures["serving_default"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        y = self.fn(x=tf.constant(x))["y"].numpy()
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("y", y)])
