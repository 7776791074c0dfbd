"""A soak: mixed traffic for a while (good and bad bodies, HEAD, clients that leave mid-body or
mid-answer, keep-alive and not), then the server must show no trace of it: no 5xx, the in-flight
gauge back to 0, and resident memory grown by no more than a small bound after warm-up.

The figures are printed for the README's reliability section (run with ``-s``)."""

from __future__ import annotations

import os
import random
import socket
import threading
import time

import requests

from tests.server.conftest import Server

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "20"))
CLIENTS = 16
ROW = [5.1, 3.5, 1.4, 0.2]
#: resident memory a soak may add after warm-up (allocator arenas, caches settling)
RSS_GROWTH_BOUND_MB = 40


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(ln for ln in f if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def gauge(server: Server, name: str) -> float:
    text = requests.get(server.url("/metrics"), timeout=10).text
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name + " ") or ln.startswith(name + "{"))


def one_request(server: Server, session: requests.Session, rng: random.Random) -> int | None:
    """One request of a random kind; its status (None for a client that left on purpose)."""
    kind = rng.randrange(10)
    url = server.url
    if kind < 3:
        return session.post(url("/v1/models/iris:predict"), json={"instances": [ROW] * rng.randint(1, 64)},
                            timeout=30).status_code
    if kind == 3:
        body = {"inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32", "data": ROW * 2}]}
        return session.post(url("/v2/models/iris/infer"), json=body, timeout=30).status_code
    if kind == 4:  # bad bodies of several classes
        bad = rng.choice(['{"instances": [[1, 2]]}', '{"instances": [[1, true, 3, 4]]}', '{"inputs": 5}', "{",
                          '{"instances": ' + "[" * 80 + "1" + "]" * 80 + "}", '{"x": "\\ud800"}'])
        return session.post(url("/v1/models/iris:predict"), data=bad, timeout=30).status_code
    if kind == 5:
        return session.head(url("/v1/models/iris:predict"), timeout=30).status_code
    if kind == 6:
        return session.post(url("/v1/models/iris:explain"), json={"instances": [ROW]}, timeout=30).status_code
    if kind == 7:  # a client that sends half a body and leaves
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"POST /v1/models/iris:predict HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{\"inst")
        return None
    if kind == 8:  # a client that asks and leaves before the answer
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            body = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
            s.sendall(b"POST /v1/models/iris:predict HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return None
    return requests.get(url("/v1/models/iris/metadata"), timeout=30).status_code  # a new connection each time


def soak(server: Server, seconds: float) -> dict[int | None, int]:
    counts: dict[int | None, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with requests.Session() as session:
            while time.monotonic() < deadline:
                status = one_request(server, session, rng)
                with lock:
                    counts[status] = counts.get(status, 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def test_a_soak_leaves_no_trace(start_server, iris_path) -> None:
    server = start_server(iris_path, "--body-timeout-seconds", "2")
    soak(server, min(5.0, SOAK_SECONDS / 4))  # warm-up: caches, allocator arenas, the batcher's queues
    time.sleep(2.5)
    before = rss_mb(server.proc.pid)
    counts = soak(server, SOAK_SECONDS)
    time.sleep(2.5)  # the half-sent bodies time out
    after = rss_mb(server.proc.pid)
    total = sum(counts.values())
    print(f"\nsoak: {total} requests in {SOAK_SECONDS:.0f} s by {CLIENTS} clients: {dict(sorted(counts.items(), key=str))}; "
          f"RSS {before:.0f} -> {after:.0f} MB ({after - before:+.1f} MB); in flight after: "
          f"{gauge(server, 'modelserver_in_flight_requests') - 1:.0f}")
    assert not [s for s in counts if s is not None and s >= 500], counts
    assert counts.get(200, 0) > total / 3
    assert gauge(server, "modelserver_in_flight_requests") <= 1  # the scrape itself
    assert after - before < RSS_GROWTH_BOUND_MB
    assert server.proc.poll() is None
