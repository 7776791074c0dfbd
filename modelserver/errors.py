"""The model server's error hierarchy; each class carries its HTTP status, the one place they map.

Every failure a client can cause is raised as a ``ModelServerError`` subclass. Each class carries
what an answer needs: its HTTP status, its OpenAI ``type`` and ``code``, and headers of its own
(``Retry-After`` on ``Overloaded``). ``server.errors.render_error`` turns any exception into an
answer from these; anything else that escapes a handler is a real bug (500).
"""

from __future__ import annotations

import reprlib
from typing import Any, ClassVar

_quoted = reprlib.Repr()
_quoted.maxstring = _quoted.maxother = 80
_quoted.maxlist = _quoted.maxtuple = _quoted.maxset = 8
_quoted.maxdict = 6
_quoted.maxlevel = 3


def shown(value: object) -> str:
    """A client's value as an error message quotes it: its repr, cut to about a line whatever its size
    (a body's value may be megabytes, and a message that echoes it whole costs as much to make)."""
    return _quoted.repr(value)


class ModelServerError(Exception):
    """Base class: an error with an HTTP status and a message for the client."""

    status: int = 500
    #: short machine-readable code: ``code`` in OpenAI-style bodies (an instance may be more precise)
    code: str = "internal_error"
    #: the OpenAI error ``type`` of this class
    kind: str = "server_error"
    #: headers every answer of this class carries besides its body
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its param and code (errors come back from the reader process)."""
        return _rebuild, (type(self), self.message, self.param, self.code)

    def openai_body(self) -> dict[str, dict[str, str | None]]:
        """The OpenAI error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class InvalidInput(ModelServerError):
    """The request body does not fit the protocol or the model's signature (400)."""

    status = 400
    code = "invalid_request_error"
    kind = "invalid_request_error"


class Unauthorized(ModelServerError):
    """No API key, or an unknown one (401)."""

    status = 401
    code = "invalid_api_key"
    kind = "authentication_error"


class NotFound(ModelServerError):
    """Unknown model, version, label, signature, output or path (404)."""

    status = 404
    code = "not_found"
    kind = "invalid_request_error"


class MethodNotAllowed(ModelServerError):
    """The path exists but not for this HTTP method (405)."""

    status = 405
    code = "method_not_allowed"
    kind = "invalid_request_error"


class PayloadTooLarge(ModelServerError):
    """The body is over ``max_body_bytes`` (413)."""

    status = 413
    code = "payload_too_large"
    kind = "invalid_request_error"


class Overloaded(ModelServerError):
    """More requests waiting than ``max_concurrent_requests`` allows (429)."""

    status = 429
    code = "rate_limit_exceeded"
    kind = "rate_limit_error"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class NotReady(ModelServerError):
    """The model is still loading or warming up, or the server is shutting down (503)."""

    status = 503
    code = "not_ready"
    kind = "service_unavailable_error"


class RequestTimeout(ModelServerError):
    """The model did not answer within ``timeout_seconds`` (504)."""

    status = 504
    code = "timeout"
    kind = "timeout_error"


class LoadFailed(ModelServerError):
    """A repository's model could not be loaded when asked to (the repository API's load; 400, as
    Triton answers it); requests for it get NotReady with the same reason."""

    status = 400
    code = "model_load_failed"


class ModelLoadError(ModelServerError):
    """A model directory could not be loaded (raised at start-up, not per request)."""

    status = 500
    code = "model_load_error"


class ModelFailed(ModelServerError):
    """The model's own code failed or answered what it declared it would not (500, with the reason:
    the request was fine)."""

    status = 500
    code = "model_error"
    kind = "server_error"


class ClientGone(ModelServerError):
    """The client closed its connection before its answer: nobody is left to answer (499, nginx's code)."""

    status = 499
    code = "client_closed_request"
    kind = "invalid_request_error"

    def __init__(self, message: str = "the client closed the connection") -> None:
        super().__init__(message)


def _rebuild(cls: type[ModelServerError], message: str, param: str | None, code: str) -> ModelServerError:
    err = cls.__new__(cls)
    ModelServerError.__init__(err, message, param=param, code=code)
    return err
