"""HTTP/1 connections below the handlers: every framing error answered in JSON, timeouts, and a
connection limit that cannot turn into a busy loop.

tornado answers a malformed request with a bare ``400 Bad Request`` and no body, and closes a
connection whose header block is too long without any answer. Here:

- a malformed request line, header or body framing (bad ``Content-Length``, bad chunk sizes, a
  header without a colon, an HTTP/2 preface) gets a JSON 400 saying what was wrong;
- a header block over ``max_header_bytes`` gets a JSON 431, or 414 when the request line alone
  is too long (written straight to the socket as tornado closes it);
- at ``max_connections`` open connections, a new one gets a JSON 503 with ``Retry-After`` and is
  closed; running out of file descriptors pauses accepting for a moment (one log line a minute at
  most) instead of spinning on a listening socket that stays readable.

Idle keep-alive connections and header reads are bounded by ``idle_timeout_seconds`` (tornado uses
one timer for both), bodies by ``body_timeout_seconds``.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.httpserver
from tornado import httputil, iostream
from tornado.concurrent import Future
from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection
from tornado.ioloop import IOLoop

from modelserver.codecs import jsonio

log = logging.getLogger("modelserver")

#: descriptors kept free beside the connection limit (model files, logs, sockets of the model threads)
FD_RESERVE = 64
#: how long accepting pauses when the process is out of descriptors
ACCEPT_PAUSE_SECONDS = 0.5
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def refusal(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error body that closes the connection."""
    body = jsonio.dumps({"error": message})
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}",
             "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Malformed(Exception):
    """The request cannot be read as HTTP/1.1 (tornado's ``HTTPInputError``, held until answered)."""


class Connection(HTTP1Connection):
    """One request on a connection, with framing errors answered in JSON instead of a bare 400."""

    _refused = False
    owner: ServerConnection | None = None

    def _parse_headers(self, data: bytes) -> tuple[str, httputil.HTTPHeaders]:
        if self.owner is not None:
            self.owner.waiting_since = None  # a request arrived: the connection is not idle
        try:
            start_line, headers = super()._parse_headers(data)
            httputil.parse_request_start_line(start_line)  # tornado parses it again, unguarded
        except httputil.HTTPInputError as e:
            raise _Malformed(str(e)) from None
        return start_line, headers

    def _read_body(
        self, code: int, headers: httputil.HTTPHeaders, delegate: httputil.HTTPMessageDelegate
    ) -> Awaitable[None] | None:
        try:
            reading = super()._read_body(code, headers, delegate)
        except httputil.HTTPInputError as e:
            raise _Malformed(str(e)) from None
        return None if reading is None else self._guarded(reading)

    async def _guarded(self, reading: Awaitable[None]) -> None:
        try:
            await reading
        except httputil.HTTPInputError as e:  # bad chunk sizes, a body longer than it said
            raise _Malformed(str(e)) from None

    async def _read_message(self, delegate: httputil.HTTPMessageDelegate) -> bool:
        try:
            return await super()._read_message(delegate)
        except _Malformed as e:
            # The handler (if it saw the headers) has been told the connection closed: its own
            # answer, if it tries one, is dropped (``_refused``) so that only this one is sent.
            self._refused = True
            log.info("malformed request", extra={"peer": str(getattr(self.context, "remote_ip", "")),
                                                 "error": str(e)})
            if self.stream is not None and not self.stream.closed():
                try:
                    await self.stream.write(refusal(400, "Bad Request", f"malformed HTTP/1.1 request: {e}"))
                except iostream.StreamClosedError:
                    pass
            self.close()
            return False

    def write_headers(self, start_line: Any, headers: httputil.HTTPHeaders, chunk: bytes | None = None) -> Future[None]:
        if self._refused:
            return _done()
        return super().write_headers(start_line, headers, chunk)

    def write(self, chunk: bytes) -> Future[None]:
        if self._refused:
            return _done()
        return super().write(chunk)

    def finish(self) -> None:
        if not self._refused:
            super().finish()


def _done() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


class ServerConnection(HTTP1ServerConnection):
    """tornado's request loop over one connection, reading each request with ``Connection``."""

    #: since when the connection has waited for its next request (None: one is being handled)
    waiting_since: float | None = None

    async def _server_request_loop(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        try:
            while True:
                conn = Connection(self.stream, False, self.params, self.context)
                conn.owner = self
                self.waiting_since = time.monotonic()
                request_delegate = delegate.start_request(self, conn)
                try:
                    keep_going = await conn.read_response(request_delegate)
                except (iostream.StreamClosedError, iostream.UnsatisfiableReadError):
                    return
                except Exception:
                    log.exception("unexpected error reading a request")
                    conn.close()
                    return
                if not keep_going:
                    return
        finally:
            delegate.on_close(self)


class Stream(iostream.IOStream):
    """A connection's stream: a header block over the limit is answered (431, or 414) as it closes."""

    def close(self, exc_info: Any = False) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(error, iostream.UnsatisfiableReadError) and not self.closed() and self.socket is not None:
            line_done = 0 <= self._read_buffer.find(b"\n", 0, self.max_header_bytes)
            answer = (refusal(431, "Request Header Fields Too Large", "the request's header block is longer than "
                              f"the server's limit of {self.max_header_bytes} bytes")
                      if line_done else
                      refusal(414, "URI Too Long", f"the request line is longer than the server's limit of "
                              f"{self.max_header_bytes} bytes for the request line and headers"))
            try:  # the send buffer is empty (nothing was answered on this request yet): this does not block
                self.socket.send(answer)
            except OSError:
                pass
        super().close(exc_info)

    max_header_bytes = 65536


class HTTPServer(tornado.httpserver.HTTPServer):
    """tornado's HTTP server with JSON framing errors, a connection limit, descriptor exhaustion
    handled, and Nagle's algorithm off for good on every connection.

    tornado turns Nagle off to send each answer and back on after it: two system calls a request,
    each a moment for a model thread to take the GIL from the IO loop. Answers are written whole
    (and streamed events are wanted at once), so there is nothing for Nagle to merge.
    """

    def initialize(  # type: ignore[override]
        self, request_callback: httputil.HTTPServerConnectionDelegate, *, max_body_size: int,
        max_connections: int = 10000, idle_timeout: float = 75.0, body_timeout: float = 120.0,
        max_header_bytes: int = 65536,
    ) -> None:
        super().initialize(request_callback, max_body_size=max_body_size, idle_connection_timeout=idle_timeout,
                           body_timeout=body_timeout, max_header_size=max_header_bytes)
        self.max_header_bytes = max_header_bytes
        self.max_connections = min(max_connections, descriptor_budget())
        self._last_exhausted_log = 0.0

    def _handle_connection(self, connection: socket.socket, address: Any) -> None:
        if len(self._connections) >= self.max_connections:
            try:
                connection.setblocking(False)
                connection.send(refusal(503, "Service Unavailable", f"this server holds at most "
                                        f"{self.max_connections} connections; retry shortly", {"Retry-After": "1"}))
            except OSError:
                pass
            connection.close()
            return
        stream = Stream(connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size)
        stream.max_header_bytes = self.max_header_bytes
        try:
            self.handle_stream(stream, address)
        except Exception:
            log.exception("unexpected error taking a connection")
            stream.close()

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        stream.set_nodelay(True)
        stream.set_nodelay = _keep_nodelay  # type: ignore[method-assign]
        context = tornado.httpserver._HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        conn = ServerConnection(stream, self.conn_params, context)
        self._connections.add(conn)
        conn.start_serving(self)

    @property
    def connections(self) -> int:
        return len(self._connections)

    def close_idle(self, grace: float) -> None:
        """Close the connections that have waited at least ``grace`` seconds for a request (at shutdown:
        a client still sending reuses its connection at once, and gets ``Connection: close`` on its answer)."""
        now = time.monotonic()
        for conn in list(self._connections):
            since = getattr(conn, "waiting_since", None)
            if since is not None and now - since >= grace:
                conn.stream.close()

    def add_sockets(self, sockets: Any) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_on(sock, self._handle_connection)

    def _accept_on(self, sock: socket.socket, take: Callable[[socket.socket, Any], None]) -> Callable[[], None]:
        """Accept connections on ``sock``; out of descriptors, stop watching it for a moment."""
        loop = IOLoop.current()
        state = {"removed": False, "watching": True}

        def accept(fd: Any, events: int) -> None:
            for _ in range(128):
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as e:
                    if e.errno not in _OUT_OF_DESCRIPTORS:
                        raise
                    self._exhausted(e)
                    loop.remove_handler(sock)
                    state["watching"] = False
                    loop.call_later(ACCEPT_PAUSE_SECONDS, resume)
                    return
                take(connection, address)

        def resume() -> None:
            if not state["removed"] and not state["watching"]:
                loop.add_handler(sock, accept, IOLoop.READ)
                state["watching"] = True

        def remove() -> None:
            if state["watching"]:
                loop.remove_handler(sock)
            state["removed"] = True

        loop.add_handler(sock, accept, IOLoop.READ)
        return remove

    def _exhausted(self, error: OSError) -> None:
        now = time.monotonic()
        if now - self._last_exhausted_log >= 60:
            self._last_exhausted_log = now
            log.warning("out of file descriptors: not accepting for a moment",
                        extra={"error": str(error), "connections": len(self._connections)})


def _keep_nodelay(value: bool) -> None:
    """tornado's per-answer toggle, ignored: the connection keeps TCP_NODELAY on."""


def descriptor_budget() -> int:
    """Connections this process can hold: its descriptor limit (raised to the hard limit) less a reserve."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(1, soft - FD_RESERVE)
