"""In-process cost of reading request bodies: the general path (orjson, then the codecs' list
conversion) against ``codecs.fastparse`` (simdjson), for the bodies ``make bench`` sends.

``.venv/bin/python bench/parse.py``: prints milliseconds per body (parse and decode against the
signature), best of five repeats, and the ratio. Nothing is asserted.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modelserver.codecs import fastparse, jsonio, v1, v2  # noqa: E402
from modelserver.interface import Signature, TensorSpec  # noqa: E402


def per_call_ms(fn: Callable[[], object], seconds: float = 0.5) -> float:
    best = float("inf")
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            fn()
            n += 1
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1000


def main() -> None:
    rng = np.random.default_rng(0)  # the bodies of bench/run.py
    images = np.round(rng.standard_normal((1, 32)), 4), np.round(rng.random((32, 28, 28, 1)), 4)
    mlp_row, imgs = images
    mnist = Signature("serving_default", (TensorSpec("x", "FP32", (-1, 28, 28, 1)),), (TensorSpec("y", "FP32", (-1, 10)),))
    mlp = Signature("serving_default", (TensorSpec("x", "FP32", (-1, 32)),), (TensorSpec("y", "FP32", (-1, 10)),))
    v2_body = {"inputs": [{"name": "x", "shape": [32, 28, 28, 1], "datatype": "FP32", "data": imgs.ravel().tolist()}]}
    cases = [
        ("V1 one MLP row", json.dumps({"instances": mlp_row.tolist()}).encode(), mlp, "v1"),
        ("V1 32 images, nested", json.dumps({"instances": imgs.tolist()}).encode(), mnist, "v1"),
        ("V2 32 images, flat", json.dumps(v2_body).encode(), mnist, "v2"),
    ]
    print(f"{'body':24} {'bytes':>8} {'general ms':>11} {'fastparse ms':>13} {'ratio':>7}")
    for name, body, sig, proto in cases:
        def decode(parsed: object, sig: Signature = sig, proto: str = proto) -> object:
            if proto == "v1":
                return v1.decode(parsed, sig, max_instances=10000)
            return v2.decode(parsed, b"", sig, max_instances=10000)

        general = per_call_ms(lambda body=body: decode(jsonio.loads(body)))
        fast = per_call_ms(lambda body=body: decode(fastparse.loads(body)))
        print(f"{name:24} {len(body):8d} {general:11.3f} {fast:13.3f} {general / fast:6.1f}x")


if __name__ == "__main__":
    main()
