"""What every request goes through, whichever transport serves it: one ``RequestCycle`` a request.

A request id (the client's ``X-Request-ID`` or a new one), the in-flight count, ``Connection:
close`` while draining, the API key and the declared body size (``admit``), the body gathered up
to the limit (``BodyBuffer``, 413 past it), and at the end its metrics and access-log line
(``close``), when the models it held (``leases``) are released too. The tornado handlers (``base``) and the fast inference path (``exchange``) both hold
one, so a client cannot tell which served it.
"""

from __future__ import annotations

import itertools
import logging
import os
import time

from tornado.httputil import HTTPHeaders

from modelserver.errors import PayloadTooLarge
from modelserver.runtime.repository import ModelEntry
from modelserver.server.context import ServerContext

access_log = logging.getLogger("modelserver.access")

#: request ids for requests that bring none: a random per-process prefix and a counter, as unique as
#: uuid4 hex ids across replicas and cheaper to make
_ID_PREFIX = os.urandom(8).hex()
_ids = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):016x}"


class BodyBuffer:
    """A request body as its chunks arrive, refused once it grows past ``limit`` bytes."""

    __slots__ = ("chunks", "size", "limit")

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit

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


def close_after_answer(connection: object) -> None:
    """While draining: close the connection after this answer ("Connection: close"), so keep-alive
    clients reconnect, through the Service, to a pod that is not going away."""
    if connection is not None and hasattr(connection, "_disconnect_on_finish"):
        setattr(connection, "_disconnect_on_finish", True)  # noqa: B010 - tornado's own flag


def declared_length(value: str | None) -> int | None:
    """The body length a ``Content-Length`` header declares: repeated equal values (``"9, 9"``, as
    proxies sometimes send, and as tornado reads them) count once; anything unreadable is None
    (tornado itself refuses it, in JSON, before the body)."""
    if not value:
        return None
    pieces = {p.strip() for p in value.split(",")}
    if len(pieces) != 1:
        return None
    (piece,) = pieces
    return int(piece) if piece.isascii() and piece.isdigit() else None


class RequestCycle:
    """One request from its headers to its accounting."""

    __slots__ = ("ctx", "method", "path", "request_id", "body", "started", "counted", "closed", "leases")

    def __init__(self, ctx: ServerContext, method: str, path: str, headers: HTTPHeaders) -> None:
        self.ctx = ctx
        self.method = method
        self.path = path
        self.request_id = headers.get("X-Request-ID") or new_request_id()
        self.body = BodyBuffer(ctx.settings.max_body_bytes)
        self.started = time.perf_counter()
        self.counted = False
        self.closed = False
        #: the repository's models this request holds (``DataPlane.use``): released when it ends
        self.leases: list[ModelEntry] | None = None

    def start(self, connection: object) -> None:
        """The request is in flight: counted until ``close``; while draining its connection closes after it."""
        self.ctx.in_flight += 1
        self.counted = True
        if self.ctx.draining:
            close_after_answer(connection)

    def admit(self, headers: HTTPHeaders, needs_auth: bool) -> None:
        """The API key (when keys are set and the endpoint needs one) and the declared body size."""
        ctx = self.ctx
        if needs_auth:
            ctx.check_key(headers.get("Authorization"), headers.get("X-API-Key"))
        length = declared_length(headers.get("Content-Length"))
        limit = ctx.settings.max_body_bytes
        if length is not None and length > limit:
            raise PayloadTooLarge(f"request body is {length} bytes; the limit is {limit} bytes")

    def answer_headers(self) -> dict[str, str]:
        """Headers every answer carries: the request id, and the worker process when there are several."""
        if self.ctx.worker_id:
            return {"X-Request-ID": self.request_id, "X-Modelserver-Worker": self.ctx.worker_id}
        return {"X-Request-ID": self.request_id}

    def close(self, status: int, model: str, protocol: str, endpoint: str) -> None:
        """The request is done (once): out of flight, its metrics, and its access-log line
        (health checks only when they fail)."""
        if self.closed:
            return
        self.closed = True
        ctx = self.ctx
        if self.counted:
            ctx.in_flight -= 1
        if self.leases is not None and ctx.plane.manager is not None:
            ctx.plane.manager.release(self.leases)
            self.leases = None
        elapsed = time.perf_counter() - self.started
        ctx.metrics.request_done(model, protocol, endpoint, status, elapsed)
        if (endpoint != "health" or status >= 400) and access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request",
                extra={
                    "request_id": self.request_id,
                    "method": self.method,
                    "path": self.path,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "model": model,
                    "bytes_in": self.body.size,
                },
            )
