"""Inference POSTs served on tornado's HTTP/1.1 connection directly, below ``tornado.web``.

A ``tornado.web.RequestHandler`` costs about 50 µs a request on this kind of machine (the rule
list, a handler object and its default headers, the ``_execute`` coroutine, ``flush`` and
``finish``): as much as decoding, batching and encoding a small request together. So the
inference paths (V1 predict and explain, V2 infer and explain, the seed's ``/predict`` paths) are
served by ``Exchange`` objects, tornado ``HTTPMessageDelegate`` s that the ``Router`` picks by path
before ``tornado.web`` sees the request; every other request goes to the tornado Application.

An exchange takes the same steps as a handler (``admit`` for keys and the body limit, ``account``
for metrics and the access log, the error hierarchy's statuses with a JSON body), so a client
cannot tell which kind served it.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, cast
from urllib.parse import unquote

import tornado.web
from tornado import httputil

from modelserver.codecs import jsonio
from modelserver.errors import MethodNotAllowed, ModelServerError
from modelserver.server.base import (
    BodyBuffer,
    account,
    admit,
    close_after_answer,
    error_headers,
    error_log,
    new_request_id,
)
from modelserver.server.context import ServerContext

#: status of a request whose client went away before its body was read (nginx's convention)
CLIENT_GONE = 499

_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` header value, formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]


class _Headers(dict[str, str]):
    """Response headers as tornado's ``HTTP1Connection.write_headers`` reads them (membership,
    assignment, ``get_all``): a plain dict, four times cheaper to fill than ``HTTPHeaders``."""

    def get_all(self) -> Iterable[tuple[str, str]]:
        return self.items()


class Exchange(httputil.HTTPMessageDelegate):
    """One request and its answer; subclasses set ``protocol``/``endpoint`` and implement ``post``.

    Created when the request's headers arrive; the body is gathered (refused with 413 once it is
    over the limit), then ``post`` runs as a task with the path's named groups as arguments. A
    ``ModelServerError`` it raises becomes its status and ``{"error": message}``; anything else is
    a bug, logged, and answered 500.
    """

    protocol = "other"
    endpoint = "other"
    needs_auth = True

    def __init__(
        self, ctx: ServerContext, connection: httputil.HTTPConnection, method: str, path: str,
        headers: httputil.HTTPHeaders, path_kwargs: dict[str, str | None],
    ) -> None:
        self.ctx = ctx
        self.connection = connection
        self.method = method
        self.path = path
        self.headers = headers
        self.path_kwargs = path_kwargs
        self.model_label = ""
        self.request_id = headers.get("X-Request-ID") or new_request_id()
        self._body = BodyBuffer(ctx)
        self._started = time.perf_counter()
        self._answered = False
        self._task: asyncio.Task[None] | None = None
        ctx.in_flight += 1

    # -- tornado's HTTPMessageDelegate ----------------------------------------------------------
    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        if self.ctx.draining:
            close_after_answer(self.connection)
        try:
            admit(self.ctx, headers, self.needs_auth)
            if self.method != "POST":
                raise MethodNotAllowed(f"{self.method} is not served on {self.path}")
        except ModelServerError as e:
            self.fail(e)
        return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self._answered:  # refused already: the rest of the body is dropped
            return None
        too_large = self._body.add(chunk)
        if too_large is not None:
            self.fail(too_large)
        return None

    def finish(self) -> None:
        if not self._answered:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def on_connection_close(self) -> None:
        if not self._answered and self._task is None:  # gone before its body was read
            self._answered = True
            self._account(CLIENT_GONE)

    # -- the request ----------------------------------------------------------------------------
    @property
    def body(self) -> bytes:
        return self._body.data

    async def post(self, **kwargs: Any) -> None:
        raise MethodNotAllowed(f"POST is not served on {self.path}")

    async def _run(self) -> None:
        try:
            await self.post(**self.path_kwargs)
        except ModelServerError as e:
            self.fail(e)
        except Exception:
            error_log.error("unhandled error", exc_info=True, extra={"request_id": self.request_id})
            self.answer_error(500, "internal server error")
        if not self._answered:
            error_log.error("no answer", extra={"request_id": self.request_id, "path": self.path})
            self.answer_error(500, "internal server error")

    # -- the answer -----------------------------------------------------------------------------
    def respond(
        self, body: bytes, status: int = 200, content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send the whole answer (once; later calls are ignored) and account for the request."""
        if self._answered:
            return
        self._answered = True
        h = _Headers(
            {"Content-Type": content_type, "Content-Length": str(len(body)), "Date": http_date(),
             "X-Request-ID": self.request_id}
        )
        if self.ctx.worker_id:
            h["X-Modelserver-Worker"] = self.ctx.worker_id
        if headers:
            h.update(headers)
        line = httputil.ResponseStartLine("", status, httputil.responses.get(status, "Unknown"))
        self.connection.write_headers(line, cast(httputil.HTTPHeaders, h), body)
        self.connection.finish()
        self._account(status)

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.respond(jsonio.dumps(obj), status)

    def answer_error(self, status: int, message: str) -> None:
        self.respond(jsonio.dumps({"error": message}), status, headers=error_headers(status))

    def fail(self, exc: ModelServerError) -> None:
        self.answer_error(exc.status, exc.message)

    def _account(self, status: int) -> None:
        self.ctx.in_flight -= 1
        account(self.ctx, self.model_label, self.protocol, self.endpoint, status, self._started,
                self.request_id, self.method, self.path, self._body.size)


class _Pick(httputil.HTTPMessageDelegate):
    """The delegate tornado gets for each request: an Exchange if the path has one, else tornado.web."""

    __slots__ = ("router", "server_conn", "request_conn", "delegate")

    def __init__(self, router: Router, server_conn: object, request_conn: httputil.HTTPConnection) -> None:
        self.router = router
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.delegate: httputil.HTTPMessageDelegate | None = None

    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, httputil.RequestStartLine)
        delegate: httputil.HTTPMessageDelegate | None = self.router.exchange(start_line, headers, self.request_conn)
        if delegate is None:
            delegate = self.router.app.start_request(self.server_conn, self.request_conn)
        self.delegate = delegate
        return delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        assert self.delegate is not None
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        assert self.delegate is not None
        self.delegate.finish()

    def on_connection_close(self) -> None:
        if self.delegate is not None:
            self.delegate.on_connection_close()


class Router(httputil.HTTPServerConnectionDelegate):
    """What the HTTP server calls for each request: the exchange routes first, then ``app``."""

    def __init__(
        self, ctx: ServerContext, exchanges: Sequence[tuple[str, type[Exchange]]], app: tornado.web.Application
    ) -> None:
        self.ctx = ctx
        self.routes = [(re.compile(pattern + "$"), cls) for pattern, cls in exchanges]
        self.app = app

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return _Pick(self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)

    def exchange(
        self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders, conn: httputil.HTTPConnection
    ) -> Exchange | None:
        """The exchange for this request's path, or None when tornado.web serves it."""
        path = start_line.path
        query = path.find("?")
        if query >= 0:
            path = path[:query]
        for pattern, cls in self.routes:
            match = pattern.match(path)
            if match is not None:
                kwargs = {k: unquote(v) if v and "%" in v else v for k, v in match.groupdict().items()}
                return cls(self.ctx, conn, start_line.method, path, headers, kwargs)
        return None
