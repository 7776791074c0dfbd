"""Make a model repository of many small models: one churn model per customer, each a Keras file.

Every model takes ``tenure`` [-1, 1] and ``usage`` [-1, 3] and answers ``churn`` [-1, 1], with
weights of its own. Write them to a directory, or upload them below an s3:// prefix (the standard
AWS_* variables say where and as whom, AWS_ENDPOINT_URL for an S3-compatible store):

    .venv/bin/python examples/model-repository.py /tmp/customers --models 40
    .venv/bin/modelserver serve --model-repository /tmp/customers --load-policy on-demand --max-loaded-bytes 32000000
    .venv/bin/python examples/model-repository.py s3://models/customers --models 40

Then serve it with examples/model-repository.yaml.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402


def customer_model(seed: int) -> keras.Model:
    """A small churn model; ``seed`` makes its weights its own."""
    keras.utils.set_random_seed(seed)
    tenure = keras.Input(shape=(1,), name="tenure")
    usage = keras.Input(shape=(3,), name="usage")
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([tenure, usage]))
    churn = keras.layers.Dense(1, activation="sigmoid", name="churn")(hidden)
    return keras.Model(inputs=[tenure, usage], outputs=churn)


def write(directory: Path, count: int) -> list[Path]:
    """``customer-001.keras`` ... in ``directory``: a model repository of ``count`` models."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        path = directory / f"customer-{i:03d}.keras"
        customer_model(seed=i).save(path)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a directory, or s3://BUCKET/PREFIX")
    parser.add_argument("--models", type=int, default=40, help="how many (default 40)")
    args = parser.parse_args()
    if not args.target.startswith("s3://"):
        for path in write(Path(args.target), args.models):
            print(path)
        return 0
    import boto3

    bucket, _, prefix = args.target[len("s3://"):].partition("/")
    client = boto3.client("s3")
    with tempfile.TemporaryDirectory() as tmp:
        for path in write(Path(tmp), args.models):
            key = f"{prefix.strip('/')}/{path.name}".lstrip("/")
            client.upload_file(str(path), bucket, key)
            print(f"s3://{bucket}/{key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
