"""The base handler: request ids, API keys, the body-size limit, JSON errors, metrics and access logs.

Bodies are streamed so an over-size request is refused with 413 from its Content-Length before
the body is read (tornado itself would answer 400 and drop the connection).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

import tornado.web
from tornado.httputil import HTTPHeaders

from modelserver.codecs import jsonio
from modelserver.errors import ModelServerError, NotFound, PayloadTooLarge
from modelserver.server.context import ServerContext

access_log = logging.getLogger("modelserver.access")
error_log = logging.getLogger("modelserver.error")

#: request ids for requests that bring none: a random per-process prefix and a counter, as unique as
#: uuid4 hex ids across replicas and cheaper to make
_ID_PREFIX = os.urandom(8).hex()
_ids = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):016x}"


# -- what every request goes through, on a RequestHandler or an Exchange -------------------------
def admit(ctx: ServerContext, headers: HTTPHeaders, needs_auth: bool) -> None:
    """The API key (when keys are set and the endpoint needs one) and the declared body size."""
    if needs_auth:
        ctx.check_key(headers.get("Authorization"), headers.get("X-API-Key"))
    length = headers.get("Content-Length")
    limit = ctx.settings.max_body_bytes
    if length and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body is {length} bytes; the limit is {limit} bytes")


class BodyBuffer:
    """A request body as its chunks arrive, refused once it grows past ``max_body_bytes``."""

    __slots__ = ("chunks", "size", "limit")

    def __init__(self, ctx: ServerContext) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = ctx.settings.max_body_bytes

    def add(self, chunk: bytes) -> PayloadTooLarge | None:
        """Keep a chunk; past the limit, drop what was kept and return the error to answer."""
        self.size += len(chunk)
        if self.size > self.limit:
            self.chunks = []
            return PayloadTooLarge(f"request body is over the limit of {self.limit} bytes")
        self.chunks.append(chunk)
        return None

    @property
    def data(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)


def error_headers(status: int) -> dict[str, str]:
    """Headers an error answer carries besides its JSON body: when to retry an overloaded server."""
    return {"Retry-After": "1"} if status == 429 else {}


def close_after_answer(connection: object) -> None:
    """While draining: close the connection after this answer ("Connection: close"), so keep-alive
    clients reconnect, through the Service, to a pod that is not going away."""
    if connection is not None and hasattr(connection, "_disconnect_on_finish"):
        setattr(connection, "_disconnect_on_finish", True)  # noqa: B010 - tornado's own flag


def account(
    ctx: ServerContext, model: str, protocol: str, endpoint: str, status: int, started: float,
    request_id: str, method: str, path: str, bytes_in: int,
) -> None:
    """A finished request: its metrics, and its access-log line (health checks only when they fail)."""
    elapsed = time.perf_counter() - started
    ctx.metrics.request_done(model, protocol, endpoint, status, elapsed)
    if (endpoint != "health" or status >= 400) and access_log.isEnabledFor(logging.INFO):
        access_log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": method,
                "path": path,
                "status": status,
                "ms": round(elapsed * 1000, 2),
                "model": model,
                "bytes_in": bytes_in,
            },
        )


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """JSON in, JSON out; subclasses set ``protocol``/``endpoint`` and implement ``get``/``handle_post``."""

    protocol = "other"
    endpoint = "other"
    #: inference and metadata need a key (when keys are configured); health and metrics do not
    needs_auth = True

    def initialize(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.model_label = ""
        self._body = BodyBuffer(ctx)
        self._started = time.perf_counter()
        self._counted = False

    def prepare(self) -> None:
        self.ctx.in_flight += 1
        self._counted = True
        self.request_id = self.request.headers.get("X-Request-ID") or new_request_id()
        self.set_header("X-Request-ID", self.request_id)
        if self.ctx.worker_id:
            self.set_header("X-Modelserver-Worker", self.ctx.worker_id)
        if self.ctx.draining:
            close_after_answer(self.request.connection)
        admit(self.ctx, self.request.headers, self.needs_auth)

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        too_large = self._body.add(chunk)
        if too_large is not None:
            self.fail(too_large)

    @property
    def body(self) -> bytes:
        return self._body.data

    def json_body(self) -> Any:
        return jsonio.loads(self.body)

    async def post(self, *args: str, **kwargs: str) -> None:
        if self._finished:  # refused while the body was streaming in
            return
        await self.handle_post(*args, **kwargs)

    async def handle_post(self, *args: Any, **kwargs: Any) -> None:
        raise NotFound(f"POST is not served on {self.request.path}")

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(jsonio.dumps(obj))

    # -- errors ---------------------------------------------------------------------------------
    def error_body(self, status: int, message: str, exc: BaseException | None) -> dict[str, Any]:
        return {"error": message}

    def fail(self, exc: ModelServerError) -> None:
        self.send_error(exc.status, exc_info=(type(exc), exc, None))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ModelServerError):
            if not self._finished:
                self.fail(e)
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ModelServerError):
            message = exc.message
        elif status_code == 405:
            message = f"{self.request.method} is not served on {self.request.path}"
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message or self._reason
        else:
            message = "internal server error" if status_code >= 500 else self._reason
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json")
        for name, value in error_headers(status_code).items():
            self.set_header(name, value)
        self.finish(jsonio.dumps(self.error_body(status_code, message, exc)))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (ModelServerError, tornado.web.HTTPError)):
            return  # answered as JSON and logged in the access line
        error_log.error(
            "unhandled error", exc_info=(typ, value, tb), extra={"request_id": getattr(self, "request_id", "")}
        )

    # -- accounting -----------------------------------------------------------------------------
    def on_finish(self) -> None:
        if self._counted:
            self.ctx.in_flight -= 1
        account(
            self.ctx, self.model_label, self.protocol, self.endpoint, self.get_status(), self._started,
            getattr(self, "request_id", ""), self.request.method or "", self.request.path, self._body.size,
        )


class NotFoundHandler(BaseHandler):
    """Any path the server does not serve: a JSON 404."""

    needs_auth = False

    def prepare(self) -> None:
        super().prepare()
        raise NotFound(f"no such endpoint: {self.request.method} {self.request.path}")

