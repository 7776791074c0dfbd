"""The connection layer's pure parts: the JSON refusal bytes, and the descriptor budget."""

from __future__ import annotations

import json
import subprocess
import sys

from modelserver.server.connection import FD_RESERVE, refusal
from modelserver.server.pipeline import declared_length


def test_a_refusal_is_a_whole_json_answer_that_closes():
    raw = refusal(503, "Service Unavailable", "full", {"Retry-After": "1"})
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 503 Service Unavailable" and b"Connection: close" in lines
    assert f"Content-Length: {len(body)}".encode() in lines and b"Retry-After: 1" in lines
    assert json.loads(body) == {"error": "full"}


def test_the_connection_limit_stays_inside_the_descriptor_limit():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200)); "
            "from modelserver.server.connection import descriptor_budget; print(descriptor_budget())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == 200 - FD_RESERVE
    # a soft limit below the hard one is raised first
    code = code.replace("(200, 200)", "(150, 300)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == 300 - FD_RESERVE


def test_declared_lengths():
    assert declared_length("12") == 12 and declared_length("9, 9") == 9 and declared_length("9,9 ,9") == 9
    assert declared_length("5, 6") is None and declared_length("abc") is None and declared_length("\u00b2") is None
    assert declared_length(None) is None and declared_length("") is None


def test_out_of_descriptors_pauses_accepting_instead_of_spinning(caplog):
    """accept() failing with EMFILE stops watching the listener for a moment (no busy loop), logs
    once, and accepting resumes by itself."""
    import asyncio
    import errno
    import socket as socketlib

    from modelserver.server import connection

    class Listener:
        def __init__(self) -> None:
            self.sock = socketlib.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(8)
            self.sock.setblocking(False)
            self.failing = True
            self.calls = 0

        def fileno(self) -> int:
            return self.sock.fileno()

        def accept(self):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.failing:
                raise OSError(errno.EMFILE, "Too many open files")
            return self.sock.accept()

    async def scenario() -> tuple[int, int, list]:
        server = connection.HTTPServer(lambda request: None, max_body_size=1000)  # type: ignore[arg-type]
        listener = Listener()
        taken: list = []
        remove = server._accept_on(listener, lambda conn, addr: taken.append(conn))  # type: ignore[arg-type]
        client = socketlib.create_connection(listener.sock.getsockname())
        await asyncio.sleep(0.2)  # paused: one failed accept, not thousands
        calls_while_paused = listener.calls
        listener.failing = False
        await asyncio.sleep(connection.ACCEPT_PAUSE_SECONDS + 0.3)  # resumed: the waiting client is taken
        remove()
        client.close()
        for conn in taken:
            conn.close()
        listener.sock.close()
        return calls_while_paused, listener.calls, taken

    with caplog.at_level("WARNING", logger="modelserver"):
        calls_while_paused, calls, taken = asyncio.run(scenario())
    assert calls_while_paused == 1 and len(taken) == 1 and calls >= 2
    assert sum("out of file descriptors" in r.message for r in caplog.records) == 1
