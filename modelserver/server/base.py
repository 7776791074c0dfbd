"""The tornado transport: ``BaseHandler`` for every route that ``tornado.web`` serves (metadata,
health, pages, the OpenAI endpoints), with JSON errors.

What a request goes through (request id, API key, body limit, drain, metrics, access log) is the
``RequestCycle`` of ``pipeline``; errors become answers in ``errors.render_error``. Bodies are
streamed so an over-size request is refused with 413 from its Content-Length before the body is
read (tornado itself would answer 400 and drop the connection).
"""

from __future__ import annotations

import inspect
from typing import Any

import tornado.web

from modelserver.codecs import jsonio
from modelserver.errors import ClientGone, MethodNotAllowed, ModelServerError, NotFound
from modelserver.interface import Servable
from modelserver.server.context import ServerContext
from modelserver.server.errors import (
    INTERNAL,
    PLAIN,
    ErrorForm,
    as_server_error,
    log_failure,
    log_unhandled,
    render_error,
)
from modelserver.server.pipeline import RequestCycle


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """JSON in, JSON out; subclasses set ``protocol``/``endpoint`` and implement ``get``/``handle_post``."""

    protocol = "other"
    endpoint = "other"
    #: inference and metadata need a key (when keys are configured); health and metrics do not
    needs_auth = True
    #: how errors are written on this route
    error_form: ErrorForm = PLAIN

    def initialize(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.model_label = ""
        self.cycle = RequestCycle(ctx, self.request.method or "", self.request.path, self.request.headers)

    @property
    def request_id(self) -> str:
        return self.cycle.request_id

    def prepare(self) -> None:
        self.cycle.start(self.request.connection)
        for name, value in self.cycle.answer_headers().items():
            self.set_header(name, value)
        self.cycle.admit(self.request.headers, self.needs_auth)

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        too_large = self.cycle.body.add(chunk)
        if too_large is not None:
            self.fail(too_large)

    @property
    def body(self) -> bytes:
        return self.cycle.body.data

    def json_body(self) -> Any:
        return jsonio.loads(self.body)

    async def head(self, *args: str, **kwargs: str) -> None:
        """HEAD wherever GET is served: the same answer, its body dropped by tornado."""
        answer = self.get(*args, **kwargs)
        if inspect.isawaitable(answer):
            await answer

    def on_connection_close(self) -> None:
        """The client left before its answer (while sending its body, say): out of flight at once."""
        super().on_connection_close()  # tornado's own: a handler still waiting for its body stops waiting
        if not self._finished:
            self.cycle.close(ClientGone.status, self.model_label, self.protocol, self.endpoint)

    async def post(self, *args: str, **kwargs: str) -> None:
        if self._finished:  # refused while the body was streaming in
            return
        await self.handle_post(*args, **kwargs)

    async def handle_post(self, *args: Any, **kwargs: Any) -> None:
        raise MethodNotAllowed(f"POST is not served on {self.request.path}")

    def servable(self, model: str | None, version: str | None = None, label: str | None = None) -> Servable:
        """The model a request names, from the data plane; its name becomes the metrics label."""
        servable = self.ctx.plane.servable(model, version, label)
        self.model_label = model or self.ctx.plane.repository.default_name  # only served names: bounded
        return servable

    async def use(self, model: str | None, version: str | None = None, label: str | None = None) -> Servable:
        """``servable``, loading the model first with an on-demand repository, and held until the
        request ends (``DataPlane.use``)."""
        servable = await self.ctx.plane.use(model, version, label, self.cycle)
        self.model_label = model or self.ctx.plane.repository.default_name
        return servable

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(jsonio.dumps(obj))

    # -- errors ---------------------------------------------------------------------------------
    def fail(self, exc: ModelServerError) -> None:
        self.send_error(exc.status, exc_info=(type(exc), exc, None))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ModelServerError):
            log_failure(e, self.request_id)
            if not self._finished:
                self.fail(e)
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if status_code == 405 and not isinstance(exc, ModelServerError):
            message = f"{self.request.method} is not served on {self.request.path}"
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message or self._reason
        else:
            message = INTERNAL if status_code >= 500 else self._reason
        answer = render_error(as_server_error(exc, status_code, message), self.error_form)
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json")
        for name, value in answer.headers.items():
            self.set_header(name, value)
        self.finish(answer.body)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (ModelServerError, tornado.web.HTTPError)):
            return  # answered as JSON and logged in the access line
        log_unhandled(value, self.request_id)

    # -- accounting -----------------------------------------------------------------------------
    def on_finish(self) -> None:
        self.cycle.close(self.get_status(), self.model_label, self.protocol, self.endpoint)


class NotFoundHandler(BaseHandler):
    """Any path the server does not serve: a JSON 404."""

    needs_auth = False

    def prepare(self) -> None:
        super().prepare()
        raise NotFound(f"no such endpoint: {self.request.method} {self.request.path}")
