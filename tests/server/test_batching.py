"""Adaptive batching on the real server: merged calls, exact splits, isolated failures."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests import models


def _batch_count(server) -> float:
    text = requests.get(server.url("/metrics"), timeout=10).text
    m = re.search(r'^modelserver_batch_size_count\{model="\w+"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def picky_servers(start_server, model_dir):
    path = models.picky(model_dir / "picky-batch")
    return start_server(path), start_server(path, "--no-batching")


def _fire(server, bodies):
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda b: requests.post(server.url("/predict"), json=b, timeout=30), bodies))


def test_concurrent_requests_get_exactly_their_rows_and_failures_stay_alone(picky_servers):
    rng = np.random.default_rng(1)
    bodies = [{"instances": (rng.random((n, 2)) * 100).round(3).tolist()} for n in (1, 3, 2, 5, 1, 4, 2, 7)]
    bodies[3]["instances"][2][1] = -1.0  # only the model sees this is bad
    for server in picky_servers:
        answers = _fire(server, bodies)
        for i, (body, r) in enumerate(zip(bodies, answers)):
            if i == 3:
                assert r.status_code == 400 and "x must be >= 0" in r.json()["error"]
                continue
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(r.json()["predictions"], np.sqrt(np.asarray(body["instances"], np.float32)), rtol=1e-6)


def test_requests_arriving_while_the_model_is_busy_are_merged(start_server, model_dir):
    server = start_server(models.slow(model_dir / "slow-batch", 0.5), "--no-warmup")
    before = _batch_count(server)
    answers = _fire(server, [{"instances": [[float(i)]]} for i in range(8)])
    assert [r.json()["predictions"] for r in answers] == [[[i + 1.0]] for i in range(8)]
    calls = _batch_count(server) - before
    assert calls < 8, f"8 concurrent requests took {calls} model calls; expected them merged"
