"""Make a Keras model file to serve: two named inputs, two named outputs, saved as Keras saves by default.

    .venv/bin/python examples/keras-model.py /tmp/churn.keras
    .venv/bin/modelserver serve /tmp/churn.keras
"""

import sys

import keras
import numpy as np

target = sys.argv[1] if len(sys.argv) > 1 else "churn.keras"
keras.utils.set_random_seed(0)
tenure = keras.Input(shape=(1,), name="tenure")
usage = keras.Input(shape=(3,), name="usage")
hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([tenure, usage]))
churn = keras.layers.Dense(1, activation="sigmoid", name="churn")(hidden)
segment = keras.layers.Dense(3, activation="softmax", name="segment")(hidden)
model = keras.Model(inputs=[tenure, usage], outputs=[churn, segment])
model.compile("adam", ["binary_crossentropy", "sparse_categorical_crossentropy"])
rng = np.random.default_rng(0)
x1, x2 = rng.uniform(0, 60, (256, 1)), rng.uniform(0, 1, (256, 3))
model.fit([x1, x2], [(x1[:, 0] < 12).astype("float32"), rng.integers(0, 3, 256)], epochs=3, verbose=0)
model.save(target)
print(target)
