"""SIGTERM under load: every request is answered (HEAD included) and the process exits 0 (readiness
turning 503 at once is tested in the server tier).

The clients act as a load balancer's would: an answer with ``Connection: close`` (the server is
draining) sends that client elsewhere, here out of the test. Any request that fails before that is lost."""

from __future__ import annotations

import signal
import threading
import time

import requests

ROW = [5.1, 3.5, 1.4, 0.2]


def test_sigterm_under_load_loses_nothing(start_server, iris_path) -> None:
    server = start_server(iris_path)
    results: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(i: int) -> None:
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    if i % 4 == 0:
                        r = s.head(server.url("/v1/models/iris:predict"), timeout=30)
                        ok = r.status_code in (200, 405)
                    else:
                        r = s.post(server.url("/v1/models/iris:predict"), json={"instances": [ROW] * 8}, timeout=30)
                        ok = r.status_code == 200
                    outcome = "ok" if ok else f"status {r.status_code}"
                    moved = r.headers.get("Connection", "").lower() == "close"
                except requests.ConnectionError as e:
                    outcome, moved = f"lost: {e}", True
                with lock:
                    results.append(outcome)
                if moved:
                    return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    time.sleep(2)
    taken_before = len(results)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(40) == 0
    stop.set()
    for t in threads:
        t.join()
    lost = [r for r in results if r != "ok"]
    print(f"\nSIGTERM under load: {len(results)} requests ({taken_before} before the signal), {len(lost)} lost")
    assert not lost, lost[:5]
