"""The inference paths served below tornado.web: HTTP/1.1 behaviour a client relies on, over raw sockets."""

from __future__ import annotations

import json
import socket
import time

import requests

ROW = [5.1, 3.5, 1.4, 0.2]
BODY = json.dumps({"instances": [ROW]}).encode()


def _connect(server) -> socket.socket:
    host, port = server.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _request(path: str, body: bytes, *extra: str, version: str = "HTTP/1.1") -> bytes:
    head = [f"POST {path} {version}", "Host: test", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _read_response(sock: socket.socket, buffered: bytearray) -> tuple[str, dict[str, str], bytes]:
    """One response from the socket: status line, headers (lower-case names) and body."""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {bytes(buffered)!r}"
        buffered += chunk
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    status, *lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    size = int(headers["content-length"])
    while len(rest) < size:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    del buffered[:]
    buffered += rest[size:]
    return status, headers, rest[:size]


def test_keep_alive_and_pipelined_requests_answer_in_order(iris):
    with _connect(iris) as sock:
        buffered = bytearray()
        sock.sendall(_request("/v1/models/iris:predict", BODY, "X-Request-ID: first")
                     + _request("/v1/models/iris:predict", b'{"instances": "x"}', "X-Request-ID: second"))
        status, headers, body = _read_response(sock, buffered)
        assert status == "HTTP/1.1 200 OK" and headers["x-request-id"] == "first"
        assert headers["content-type"] == "application/json" and headers["date"].endswith("GMT")
        assert len(json.loads(body)["predictions"]) == 1
        status, headers, body = _read_response(sock, buffered)
        assert status == "HTTP/1.1 400 Bad Request" and headers["x-request-id"] == "second"
        assert "instances" in json.loads(body)["error"]
        sock.sendall(_request("/predict", BODY))  # the connection is still usable after an error
        assert _read_response(sock, buffered)[0] == "HTTP/1.1 200 OK"


def test_http_1_0_closes_after_the_answer(iris):
    with _connect(iris) as sock:
        sock.sendall(_request("/v1/models/iris:predict", BODY, version="HTTP/1.0"))
        status, headers, _ = _read_response(sock, bytearray())
        assert status.endswith("200 OK") and headers.get("connection", "close").lower() != "keep-alive"
        assert sock.recv(1) == b""


def test_expect_100_continue(iris):
    with _connect(iris) as sock:
        sock.sendall(_request("/v1/models/iris:predict", b"", "Expect: 100-continue").replace(
            b"Content-Length: 0", f"Content-Length: {len(BODY)}".encode()))
        assert sock.recv(100).startswith(b"HTTP/1.1 100")
        sock.sendall(BODY)
        assert _read_response(sock, bytearray())[0] == "HTTP/1.1 200 OK"


def test_query_strings_and_escaped_names(iris):
    r = requests.post(iris.url("/v1/models/ir%69s:predict?trace=1"), json={"instances": [ROW]}, timeout=10)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
    r = requests.post(iris.url("/v2/models/nope%2Fx/infer"), json={"inputs": []}, timeout=10)
    assert r.status_code == 404 and "nope/x" in r.json()["error"]


def _in_flight(server) -> float:
    text = requests.get(server.url("/metrics"), timeout=5).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith("modelserver_in_flight_requests "))


def _requests_with_status(server, status: int) -> float:
    text = requests.get(server.url("/metrics"), timeout=5).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith("modelserver_requests_total{") and f'status="{status}"' in ln)


def test_a_client_gone_mid_body_is_counted_and_forgotten(iris):
    before = _requests_with_status(iris, 499)
    for _ in range(3):
        with _connect(iris) as sock:
            sock.sendall(_request("/v1/models/iris:predict", BODY)[:-10])  # the body's end never comes
            time.sleep(0.05)
    deadline = time.monotonic() + 5
    while _requests_with_status(iris, 499) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _requests_with_status(iris, 499) == before + 3
    assert _in_flight(iris) == 1  # only the scrape itself
    assert requests.post(iris.url("/predict"), json={"instances": [ROW]}, timeout=10).status_code == 200
