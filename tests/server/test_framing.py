"""HTTP framing abuse over raw sockets: every malformed request gets a JSON answer with the right
status (never a bare 400, a silent close or a hang), slow and idle connections are closed by the
named timeouts, and past the connection limit a client gets a JSON 503 at once."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from tests.server.conftest import Server

LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n"
PREDICT = b"POST /v1/models/iris:predict HTTP/1.1\r\nHost: t\r\n"


@pytest.fixture(scope="module")
def tight(start_server, iris_path) -> Server:
    return start_server(iris_path, "--max-connections", "8", "--idle-timeout-seconds", "1",
                        "--body-timeout-seconds", "1", "--max-header-bytes", "8192")


def exchange(server: Server, raw: bytes, wait: float = 5.0) -> tuple[bytes, float]:
    """Send ``raw``, read until the server closes (or ``wait`` passes); the bytes and the time taken."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as s:
        start = time.monotonic()
        try:
            s.sendall(raw)
        except OSError:  # the server may answer and close before taking it all
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            out += b"<still open>"
        except ConnectionResetError:
            pass
        return out, time.monotonic() - start


def answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


CASES = [
    ("header block over the limit", LIVE + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n", 431, "header block"),
    ("request line over the limit", b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "request line"),
    ("10,000 headers", LIVE + b"".join(b"X-%d: 1\r\n" % i for i in range(10000)) + b"\r\n", 431, "header block"),
    ("Content-Length not a number", PREDICT + b"Content-Length: abc\r\n\r\n", 400, "Content-Length"),
    ("two unequal Content-Lengths", PREDICT + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400, "unequal"),
    ("two equal Content-Lengths over the body limit",
     PREDICT + b"Content-Length: 99999999999\r\nContent-Length: 99999999999\r\n\r\n", 413, "limit"),
    ("bad chunk size", PREDICT + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, "chunk"),
    ("unterminated chunk", PREDICT + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", 400, "chunk"),
    ("header without a colon", LIVE + b"Broken header\r\n\r\n", 400, "colon"),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "HTTP/2.0"),
    ("TLS hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "request line"),
    ("HTTP/0.9", b"GET /\r\n\r\n", 400, "request line"),
    ("unknown transfer coding", PREDICT + b"Transfer-Encoding: gzip\r\n\r\n", 400, "Transfer-Encoding"),
    ("body longer than declared, then garbage", PREDICT + b"Content-Length: 2\r\n\r\n{}GARBAGE\r\n\r\n", 400, ""),
]


@pytest.mark.parametrize(("name", "raw", "status", "words"), CASES, ids=[c[0] for c in CASES])
def test_malformed_requests_get_a_json_answer(tight: Server, name: str, raw: bytes, status: int, words: str) -> None:
    out, took = exchange(tight, raw)
    assert took < 2 and out and not out.endswith(b"<still open>"), (name, out[:200])
    if name.startswith("body longer"):  # the declared body is answered (400: not V1); the rest is a new request
        assert out.count(b"HTTP/1.1 400 Bad Request\r\n") == 2, out
        assert out.index(b"'instances'") < out.index(b"malformed HTTP/1.1 request"), out
        return
    got, body = answer(out)
    assert got == status and words in body["error"], (name, got, body)


def test_nothing_stays_in_flight_and_the_server_keeps_serving(tight: Server) -> None:
    for _, raw, _, _ in CASES:
        exchange(tight, raw)
    text = requests.get(tight.url("/metrics"), timeout=5).text
    gauge = next(ln for ln in text.splitlines() if ln.startswith("modelserver_in_flight_requests "))
    assert float(gauge.split()[1]) <= 1  # this scrape itself
    r = requests.post(tight.url("/v1/models/iris:predict"), json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=10)
    assert r.status_code == 200


def test_slow_headers_idle_connections_and_slow_bodies_are_closed(tight: Server) -> None:
    out, took = exchange(tight, LIVE)  # headers never finished (slowloris)
    assert out == b"" and 0.8 < took < 3, (out, took)
    out, took = exchange(tight, b"")  # connected, silent
    assert out == b"" and took < 3
    out, took = exchange(tight, PREDICT + b"Content-Length: 100\r\n\r\n{\"instances\"")  # body never finished
    assert took < 3 and not out.endswith(b"<still open>"), out
    # a keep-alive connection serves several requests, then closes when idle
    with socket.create_connection(("127.0.0.1", tight.port), timeout=5) as s:
        for _ in range(3):
            s.sendall(LIVE + b"\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        assert s.recv(65536) == b"" and time.monotonic() - start < 3


def test_past_the_connection_limit_a_client_gets_a_json_503_at_once(tight: Server) -> None:
    held = [socket.create_connection(("127.0.0.1", tight.port), timeout=5) for _ in range(8)]
    try:
        time.sleep(0.2)
        out, took = exchange(tight, LIVE + b"\r\n")
        status, body = answer(out)
        assert status == 503 and "at most 8 connections" in body["error"] and b"Retry-After: 1" in out
        assert took < 1
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert requests.get(tight.url("/v2/health/live"), timeout=5).status_code == 200
