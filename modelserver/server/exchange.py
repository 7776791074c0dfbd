"""Inference POSTs served on tornado's HTTP/1.1 connection directly, below ``tornado.web``.

A ``tornado.web.RequestHandler`` costs about 50 µs a request on this kind of machine (the rule
list, a handler object and its default headers, the ``_execute`` coroutine, ``flush`` and
``finish``): as much as decoding, batching and encoding a small request together. So the
inference paths (V1 predict and explain, V2 infer and explain, the seed's ``/predict`` paths) are
served by ``Exchange`` objects, tornado ``HTTPMessageDelegate`` s that the ``Router`` picks by path
before ``tornado.web`` sees the request; every other request goes to the tornado Application.

An exchange holds the same ``RequestCycle`` as a handler (request id, keys, the body limit, drain,
metrics and the access log) and writes its errors with the same ``render_error``, so a client
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
from modelserver.dataplane import TensorCall
from modelserver.errors import ClientGone, MethodNotAllowed, ModelServerError
from modelserver.server.context import ServerContext
from modelserver.server.errors import INTERNAL, log_failure, log_unhandled, render_error
from modelserver.server.pipeline import RequestCycle, close_after_answer

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
    over the limit), then ``post`` runs as a task with the path's named groups as arguments. An
    exception it raises is answered by ``render_error``: a ``ModelServerError`` by its class,
    anything else as a bug, logged, and answered 500.
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
        self.cycle = RequestCycle(ctx, method, path, headers)
        self.cycle.start(connection)
        self._answered = False
        self._task: asyncio.Task[None] | None = None
        #: the whole request (body included) has been read
        self._read_done = False
        #: a refusal decided from the headers of a request without a body, sent once it is read
        self._refusal: ModelServerError | None = None

    # -- tornado's HTTPMessageDelegate ----------------------------------------------------------
    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        try:
            self.cycle.admit(headers, self.needs_auth)
            if self.method != "POST":
                raise MethodNotAllowed(f"{self.method} is not served on {self.path}")
        except ModelServerError as e:
            if "Content-Length" in headers or "Transfer-Encoding" in headers:
                self.fail(e)  # at once, without reading the body (the connection closes after)
            else:
                self._refusal = e  # nothing more to read: answered as usual, the connection kept
        return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self._answered:  # refused already: the rest of the body is dropped
            return None
        too_large = self.cycle.body.add(chunk)
        if too_large is not None:
            self.fail(too_large)
        return None

    def finish(self) -> None:
        self._read_done = True
        if self._refusal is not None:
            self.fail(self._refusal)
        elif not self._answered:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def on_connection_close(self) -> None:
        if not self._answered and self._task is None:  # gone before its body was read
            self._answered = True
            self._close(ClientGone.status)

    # -- the request ----------------------------------------------------------------------------
    @property
    def body(self) -> bytes:
        return self.cycle.body.data

    @property
    def request_id(self) -> str:
        return self.cycle.request_id

    async def post(self, **kwargs: Any) -> None:
        raise MethodNotAllowed(f"POST is not served on {self.path}")

    async def _run(self) -> None:
        try:
            await self.post(**self.path_kwargs)
        except ModelServerError as e:
            log_failure(e, self.request_id)
            self.fail(e)
        except Exception as e:
            log_unhandled(e, self.request_id)
            self.fail(e)
        if not self._answered:
            log_unhandled(RuntimeError(f"no answer to {self.method} {self.path}"), self.request_id)
            self.fail(RuntimeError(INTERNAL))

    # -- the answer -----------------------------------------------------------------------------
    def respond(
        self, body: bytes, status: int = 200, content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send the whole answer (once; later calls are ignored) and account for the request."""
        if self._answered:
            return
        self._answered = True
        h = _Headers(self.cycle.answer_headers())
        h["Content-Type"] = content_type
        h["Content-Length"] = str(len(body))
        h["Date"] = http_date()
        if headers:
            h.update(headers)
        if not self._read_done:  # answered before its body was read: tornado closes the connection after,
            close_after_answer(self.connection)  # and the answer says so ("Connection: close")
        line = httputil.ResponseStartLine("", status, httputil.responses.get(status, "Unknown"))
        # a HEAD answer has the headers of the answer and no body (tornado refuses a body for it)
        self.connection.write_headers(line, cast(httputil.HTTPHeaders, h), None if self.method == "HEAD" else body)
        self.connection.finish()
        self._close(status)

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.respond(jsonio.dumps(obj), status)

    def fail(self, exc: BaseException) -> None:
        answer = render_error(exc)
        self.respond(answer.body, answer.status, headers=answer.headers)

    def _close(self, status: int) -> None:
        self.cycle.close(status, self.model_label, self.protocol, self.endpoint)


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


class InferenceExchange(Exchange):
    """A tensor inference POST (predict, infer, explain): the call goes to the data plane."""

    async def serve(self, call: TensorCall) -> None:
        try:
            answer = await self.ctx.plane.infer(call, self.cycle)
        finally:
            self.model_label = call.served_model
            if call.answered:
                self.protocol = call.answered
        self.respond(answer.body, content_type=answer.content_type, headers=answer.headers)
