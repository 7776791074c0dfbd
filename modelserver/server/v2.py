"""The V2 transport (Open Inference Protocol): health, server and model metadata, readiness, and
infer and explain through the data plane."""

from __future__ import annotations

from modelserver import __version__
from modelserver.codecs.v2 import HEADER_LENGTH, model_metadata
from modelserver.dataplane import TensorCall
from modelserver.errors import NotReady
from modelserver.server.base import BaseHandler
from modelserver.server.exchange import InferenceExchange

EXTENSIONS = ["binary_tensor_data"]


class InferHandler(InferenceExchange):
    """``POST /v2/models/{m}[/versions/{v}]/infer|explain``."""

    protocol = "v2"

    async def post(self, model: str, version: str | None = None, verb: str = "infer") -> None:  # type: ignore[override]
        self.endpoint = verb
        await self.serve(TensorCall(
            "v2", verb == "explain", self.body, model=model, version=version,
            header_length=self.headers.get(HEADER_LENGTH),
        ))


class LiveHandler(BaseHandler):
    """``GET /v2/health/live``: the process answers."""

    protocol, endpoint, needs_auth = "v2", "health", False

    async def get(self) -> None:
        self.write_json({"live": True})


class ReadyHandler(BaseHandler):
    """``GET /v2/health/ready``: every model loaded and warmed, and not shutting down."""

    protocol, endpoint, needs_auth = "v2", "health", False

    async def get(self) -> None:
        if self.ctx.ready:
            return self.write_json({"ready": True})
        reason, message = self.ctx.not_ready()
        self.write_json({"ready": False, "reason": reason, "error": message}, status=503)


class ServerMetadataHandler(BaseHandler):
    """``GET /v2``: server name, version and protocol extensions."""

    protocol, endpoint = "v2", "metadata"

    async def get(self) -> None:
        self.write_json({"name": "modelserver", "version": __version__, "extensions": EXTENSIONS})


class ModelMetadataHandler(BaseHandler):
    """``GET /v2/models/{m}[/versions/{v}]``: the default signature's tensors and the versions."""

    protocol, endpoint = "v2", "metadata"

    async def get(self, model: str, version: str | None = None) -> None:
        servable = self.servable(model, version)
        versions = list(self.ctx.plane.repository.entry(model).versions)
        self.write_json(model_metadata(servable, versions, self.ctx.plane.signature(servable, None)))


class ModelReadyHandler(BaseHandler):
    """``GET /v2/models/{m}[/versions/{v}]/ready``."""

    protocol, endpoint = "v2", "ready"

    async def get(self, model: str, version: str | None = None) -> None:
        try:
            self.servable(model, version)
        except NotReady as e:
            self.model_label = model  # a known model that is not ready yet
            return self.write_json({"name": model, "ready": False, "error": e.message}, status=503)
        ready = not self.ctx.draining
        self.write_json({"name": model, "ready": ready}, status=200 if ready else 503)
