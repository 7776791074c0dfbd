"""The KServe side of the benchmark: a custom ``kserve.Model`` serving a SavedModel's default signature,
V1 bodies over HTTP and Open Inference Protocol requests (its gRPC server).

Run with KServe's own virtual environment:
``python kserve_model.py --model_name mlp --model_dir DIR --http_port PORT``
(plus KServe's flags, such as ``--enable_latency_logging False --configure_logging False``).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import kserve  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


class SavedModel(kserve.Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.fn = None
        self.load()

    def load(self) -> bool:
        self.fn = tf.saved_model.load(self.model_dir).signatures["serving_default"]
        self.ready = True
        return self.ready

    # With --workers N, KServe pickles the model into each spawned worker: send the directory and
    # load the SavedModel there (a loaded TensorFlow function does not pickle).
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "fn"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.fn = None
        self.load()

    def predict(self, payload, headers=None):
        if isinstance(payload, kserve.InferRequest):  # the Open Inference Protocol (its gRPC server among them)
            x = payload.inputs[0].as_numpy().astype(np.float32)
            y = self.fn(x=tf.constant(x))["y"].numpy()
            out = kserve.InferOutput(name="y", shape=list(y.shape), datatype="FP32")
            out.set_data_from_numpy(y, binary_data=True)
            return kserve.InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[out],
                                        from_grpc=payload.from_grpc)
        x = np.asarray(payload["instances"], dtype=np.float32)
        y = self.fn(x=tf.constant(x))["y"].numpy()
        return {"predictions": y.tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    kserve.ModelServer().start([SavedModel(args.model_name, args.model_dir)])
