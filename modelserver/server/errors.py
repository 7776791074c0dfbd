"""Any exception as an answer: its status, its headers and its body, in the form its route speaks.

The one place an error becomes bytes, or for gRPC a status code and a message (``grpc_error``).
V1, V2, the seed paths and the pages answer ``{"error": message}``; the OpenAI routes answer the
envelope ``{"error": {"message", "type", "param", "code"}}``, and inside an event stream that same
envelope as one ``data:`` event. Status, type, code and extra headers (``Retry-After``) come from
the error's class in ``modelserver.errors``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from modelserver.codecs import jsonio
from modelserver.errors import (
    InvalidInput,
    MethodNotAllowed,
    ModelServerError,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
)

error_log = logging.getLogger("modelserver.error")

#: ``plain``: ``{"error": message}``; ``openai``: the OpenAI error envelope
ErrorForm = Literal["plain", "openai"]
PLAIN: ErrorForm = "plain"
OPENAI: ErrorForm = "openai"

INTERNAL = "internal server error"
_BY_STATUS: dict[int, type[ModelServerError]] = {
    cls.status: cls
    for cls in (InvalidInput, Unauthorized, NotFound, MethodNotAllowed, PayloadTooLarge, Overloaded, NotReady,
                RequestTimeout)
}


#: the gRPC status code (a ``grpc.StatusCode`` name) of each HTTP status: the gRPC transport's
#: errors come from the same classes, so both mappings live here
GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def as_server_error(exc: BaseException | None, status: int = 500, message: str = INTERNAL) -> ModelServerError:
    """``exc`` itself when it is one of ours; otherwise an error of the class that has ``status``
    (a bug, 500, when nothing says otherwise) with ``message``."""
    if isinstance(exc, ModelServerError):
        return exc
    err = _BY_STATUS.get(status, ModelServerError)(message)
    err.status = status
    return err


def render_error(exc: BaseException, form: ErrorForm = PLAIN) -> ErrorAnswer:
    """The answer to an exception: a ``ModelServerError`` by its class, anything else as a 500."""
    err = as_server_error(exc)
    body = err.openai_body() if form == OPENAI else {"error": err.message}
    return ErrorAnswer(err.status, dict(type(err).headers), jsonio.dumps(body))


def grpc_error(exc: BaseException) -> tuple[int, str, str]:
    """An exception as a gRPC answer: the HTTP status it has (for the metrics and the access line),
    the gRPC code's name and the message (a bug is INTERNAL, its message not shown)."""
    err = as_server_error(exc)
    return err.status, GRPC_CODES.get(err.status, "INTERNAL"), err.message


def sse_error_event(exc: BaseException) -> bytes:
    """An error inside an OpenAI event stream (the status line is long sent): one ``data:`` event."""
    return b"data: " + render_error(exc, OPENAI).body + b"\n\n"


def log_unhandled(exc: BaseException, request_id: str) -> None:
    """A bug: log it with its traceback (errors of ours are answered and logged in the access line)."""
    error_log.error("unhandled error", exc_info=(type(exc), exc, exc.__traceback__), extra={"request_id": request_id})


def log_failure(err: ModelServerError, request_id: str) -> None:
    """An answer of ours with a 5xx status (a model that failed, a timeout): logged as an error line.

    Client errors (4xx) are only in the access line; a model's fault or the server's should be seen.
    """
    if err.status >= 500:
        error_log.error("request failed", extra={"request_id": request_id, "status": err.status, "error": err.message})
