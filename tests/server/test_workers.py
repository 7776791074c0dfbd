"""Several worker processes on one port (``--workers``): spread, shared metrics and readiness, drain, restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests import models

ROW = [5.1, 3.5, 1.4, 0.2]
HEADER = "X-Modelserver-Worker"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _workers_seen(server, n: int = 40) -> dict[str, int]:
    """Which worker answered each of ``n`` requests, each on a new connection."""
    seen: dict[str, int] = {}
    for _ in range(n):
        r = requests.post(server.url("/v1/models/iris:predict"), json={"instances": [ROW]}, timeout=10)
        assert r.status_code == 200, r.text
        seen[r.headers[HEADER]] = seen.get(r.headers[HEADER], 0) + 1
    return seen


@pytest.fixture(scope="module")
def two(start_server, iris_path):
    return start_server(iris_path, "--workers", "2")


def test_requests_are_answered_by_every_worker_and_metrics_add_up(two):
    before = _predictions_counted(two)
    seen = _workers_seen(two)
    assert len(seen) == 2, seen
    assert all(_alive(int(pid)) and int(pid) != two.proc.pid for pid in seen)
    # /metrics, whichever worker renders it, counts the requests of both
    assert _predictions_counted(two) - before == 40
    text = requests.get(two.url("/metrics"), timeout=10).text
    assert re.search(r"^modelserver_ready 1\.0$", text, re.M), text


def _predictions_counted(server) -> float:
    text = requests.get(server.url("/metrics"), timeout=10).text
    m = re.search(r'^modelserver_requests_total\{endpoint="predict",model="iris",protocol="v1",status="200"\} (\S+)$',
                  text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_killed_worker_is_replaced(two):
    seen = _workers_seen(two)
    victim = int(next(iter(seen)))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.2)
        try:
            if requests.get(two.url("/v2/health/ready"), timeout=5).status_code != 200:
                continue
            now = _workers_seen(two, 20)
        except requests.RequestException:
            continue
        if len(now) == 2:
            break
    assert str(victim) not in now and not _alive(victim)
    assert two.proc.poll() is None


def test_sigterm_drains_every_worker_and_exits_zero(start_server, model_dir):
    server = start_server(models.slow(model_dir / "slow-workers", 1.5), "--workers", "2", "--no-warmup")
    answers: list[requests.Response] = []

    def call() -> None:
        answers.append(requests.post(server.url("/predict"), json={"instances": [[1.0]]}, timeout=30))

    threads = [threading.Thread(target=call) for _ in range(12)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    workers = {int(p) for p in subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True,
                                              text=True).stdout.split()}
    assert len(workers) == 2
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    assert [r.status_code for r in answers] == [200] * 12
    assert all(r.json() == {"predictions": [[2.0]]} for r in answers)
    assert len({r.headers[HEADER] for r in answers}) == 2  # both workers had requests in flight
    assert server.proc.wait(30) == 0
    assert not any(_alive(pid) for pid in workers)


def test_generative_models_refuse_several_workers(tmp_path):
    llm = tmp_path / "llm"
    llm.mkdir()
    (llm / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    done = subprocess.run([sys.executable, "-m", "modelserver", "serve", str(llm), "--workers", "2", "--port", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "generative model is served by one process" in done.stderr
