"""API keys, body and batch limits, timeouts and graceful shutdown on the real server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests import models

ROW = [5.1, 3.5, 1.4, 0.2]
KEY = "s3cret-key-value"


@pytest.fixture(scope="module")
def guarded(start_server, iris_path, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("keys") / "keys"
    key_file.write_text("other-key\n" + KEY + "\n")
    return start_server(
        iris_path, "--api-key-file", str(key_file), "--max-body-bytes", "2000", "--max-instances", "5"
    )


def test_api_keys(guarded):
    url = guarded.url("/v1/models/iris:predict")
    body = {"instances": [ROW]}
    r = requests.post(url, json=body, timeout=10)
    assert r.status_code == 401 and "API key" in r.json()["error"]
    r = requests.post(url, json=body, headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 401
    assert requests.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=10).status_code == 200
    assert requests.post(url, json=body, headers={"X-API-Key": "other-key"}, timeout=10).status_code == 200
    assert requests.get(guarded.url("/v1/models/iris/metadata"), timeout=10).status_code == 401
    assert requests.get(guarded.url("/v2/models/iris"), timeout=10).status_code == 401
    for open_path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
        assert requests.get(guarded.url(open_path), timeout=10).status_code == 200
    assert KEY not in guarded.log() and "other-key" not in guarded.log()


def test_body_over_the_limit_is_413_json(guarded):
    headers = {"X-API-Key": KEY}
    big = '{"instances": [' + ",".join(["[1.0, 2.0, 3.0, 4.0]"] * 200) + "]}"
    r = requests.post(guarded.url("/v1/models/iris:predict"), data=big, headers=headers, timeout=10)
    assert r.status_code == 413, r.text
    assert "2000" in r.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(20):
            yield b" " * 500

    r = requests.post(guarded.url("/v1/models/iris:predict"), data=chunks(), headers=headers, timeout=10)
    assert r.status_code == 413
    assert requests.post(guarded.url("/predict"), json={"instances": [ROW]}, headers=headers, timeout=10).status_code == 200


def test_max_instances(guarded):
    r = requests.post(guarded.url("/predict"), json={"instances": [ROW] * 6}, headers={"X-API-Key": KEY}, timeout=10)
    assert r.status_code == 400 and "at most 5" in r.json()["error"]


def test_slow_model_times_out_with_504_and_sigterm_drains(start_server, model_dir):
    server = start_server(models.slow(model_dir / "slow", 2.0), "--timeout-seconds", "1", "--no-warmup")
    t0 = time.monotonic()
    r = requests.post(server.url("/predict"), json={"instances": [[1.0]]}, timeout=10)
    assert r.status_code == 504 and "1 seconds" in r.json()["error"]
    assert time.monotonic() - t0 < 1.9

    # Graceful shutdown: a request in flight finishes; readiness turns 503 at once; then exit 0.
    slow_ok = start_server(models.slow(model_dir / "slow2", 1.5), "--no-warmup")
    results: dict[str, requests.Response] = {}
    t = threading.Thread(target=lambda: results.update(r=requests.post(slow_ok.url("/predict"), json={"instances": [[1.0]]}, timeout=20)))
    t.start()
    time.sleep(0.3)
    slow_ok.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    ready = requests.get(slow_ok.url("/v2/health/ready"), timeout=5)
    assert ready.status_code == 503 and ready.json()["ready"] is False
    t.join()
    assert results["r"].status_code == 200 and results["r"].json() == {"predictions": [[2.0]]}
    assert slow_ok.proc.wait(20) == 0


def test_metrics(iris):
    requests.post(iris.url("/v1/models/iris:predict"), json={"instances": [ROW]}, timeout=10)
    requests.post(iris.url("/v1/models/iris:predict"), json={"instances": "x"}, timeout=10)
    text = requests.get(iris.url("/metrics"), timeout=10).text
    assert 'modelserver_requests_total{endpoint="predict",model="iris",protocol="v1",status="200"}' in text
    assert 'modelserver_requests_total{endpoint="predict",model="iris",protocol="v1",status="400"}' in text
    assert "modelserver_request_duration_seconds_bucket" in text
    assert "modelserver_in_flight_requests" in text and "modelserver_batch_size_bucket" in text
    requests.post(iris.url("/v1/models/no-such-model-7:predict"), json={"instances": [ROW]}, timeout=10)
    text = requests.get(iris.url("/metrics"), timeout=10).text
    assert "no-such-model-7" not in text  # unknown names never become labels
    assert 'model="",protocol="v1",status="404"' in text


def test_logs_are_json_lines_with_request_ids(iris):
    requests.post(iris.url("/v1/models/iris:predict"), json={"instances": [ROW]}, headers={"X-Request-ID": "trace-42"}, timeout=10)
    assert requests.get(iris.url("/v2/health/live"), timeout=10).headers["X-Request-ID"]

    def logged() -> bool:  # the access line is written just after the response goes out
        lines = [json.loads(line) for line in iris.log().splitlines() if line.startswith("{")]
        return any(e.get("request_id") == "trace-42" and e.get("status") == 200 and e.get("model") == "iris" for e in lines)

    deadline = time.monotonic() + 5
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged()


def test_home_page_and_openapi(iris):
    home = requests.get(iris.url("/"), timeout=10)
    assert home.status_code == 200 and "text/html" in home.headers["Content-Type"]
    assert "features" in home.text and "/v1/models/iris:predict" in home.text and "/v2/models/iris/infer" in home.text
    assert f"http://{iris.address}/v1/models/iris:predict" in home.text
    proxied = requests.get(iris.url("/"), headers={"X-Forwarded-Proto": "https"}, timeout=10).text
    assert f"https://{iris.address}/v1/models/iris:predict" in proxied  # the examples use the client's scheme
    spec = requests.get(iris.url("/openapi.json"), timeout=10).json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/models/{model}:predict" in spec["paths"] and "/v2/models/{model}/infer" in spec["paths"]
    assert requests.get(iris.url("/docs"), timeout=10).status_code == 200


def test_failed_warmup_keeps_the_server_unready_and_says_why(start_server, model_dir):
    server = start_server(models.needs_positive(model_dir / "positive"), ready=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = requests.get(server.url("/v1/models/positive"), timeout=5).json()["model_version_status"][0]
        if status["state"] != "LOADING":
            break
        time.sleep(0.2)
    assert status["state"] == "END" and status["status"]["error_code"] == "UNKNOWN"
    assert "x must be > 0" in status["status"]["error_message"]
    ready = requests.get(server.url("/v2/health/ready"), timeout=5)
    assert ready.status_code == 503 and "model failed to load" in ready.json()["error"]
    assert ready.json()["reason"] == "ModelLoadFailed"  # the code the operator matches
    r = requests.post(server.url("/predict"), json={"instances": [[1.0, 2.0]]}, timeout=5)
    assert r.status_code == 503 and "failed" in r.json()["error"]
    assert requests.get(server.url("/v2/health/live"), timeout=5).status_code == 200


def test_loading_is_reported_before_ready(start_server, model_dir):
    server = start_server(models.slow(model_dir / "slow-load", 1.0), ready=False)
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            r = requests.get(server.url("/v2/health/ready"), timeout=5)
        except requests.RequestException:
            time.sleep(0.05)
            continue
        seen.add(r.status_code)
        if r.status_code == 200:
            break
        time.sleep(0.05)
    assert seen == {503, 200}


def test_drain_signal_turns_readiness_off_and_closes_connections(start_server, iris_path):
    server = start_server(iris_path)
    session = requests.Session()
    assert session.post(server.url("/predict"), json={"instances": [ROW]}, timeout=10).headers.get("Connection") != "close"
    done = subprocess.run(
        [sys.executable, "-m", "modelserver", "drain", "--pid", str(server.proc.pid), "--wait", "0"], timeout=30
    )
    assert done.returncode == 0
    deadline = time.monotonic() + 5
    while requests.get(server.url("/v2/health/ready"), timeout=5).status_code != 503:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = session.post(server.url("/predict"), json={"instances": [ROW]}, timeout=10)
    assert r.status_code == 200 and r.headers["Connection"] == "close"  # still serving, but moving clients on
    assert server.stop() == 0


def test_overload_is_429_with_retry_after(start_server, model_dir):
    server = start_server(models.slow(model_dir / "slow429", 1.0), "--max-concurrent-requests", "1", "--no-warmup")
    url = server.url("/v1/models/slow429:predict")
    first: dict[str, requests.Response] = {}
    t = threading.Thread(target=lambda: first.update(r=requests.post(url, json={"instances": [[1.0]]}, timeout=20)))
    t.start()
    time.sleep(0.3)
    r = requests.post(url, json={"instances": [[1.0]]}, timeout=10)
    t.join()
    assert r.status_code == 429 and r.headers["Retry-After"] == "1" and "too many requests" in r.json()["error"]
    assert first["r"].status_code == 200
