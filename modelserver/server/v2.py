"""The V2 transport (Open Inference Protocol): health, server and model metadata, readiness,
infer and explain through the data plane, and the repository extension (index, load, unload)."""

from __future__ import annotations

from typing import Any

from modelserver import __version__
from modelserver.codecs.v2 import HEADER_LENGTH, model_metadata, parse_repository_call, parse_repository_index
from modelserver.dataplane import TensorCall
from modelserver.errors import NotReady
from modelserver.server.base import BaseHandler
from modelserver.server.exchange import InferenceExchange

EXTENSIONS = ["binary_tensor_data", "model_repository"]


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
        servable = await self.use(model, version)
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


class RepositoryBase(BaseHandler):
    protocol = "v2"

    def optional_body(self) -> Any:
        return self.json_body() if self.body.strip() else None


class RepositoryIndexHandler(RepositoryBase):
    """``POST /v2/repository/index``: every model of the repository with its state and reason."""

    endpoint = "repository"

    async def handle_post(self) -> None:
        ready_only = parse_repository_index(self.optional_body())
        self.write_json(await self.ctx.plane.repository_index(ready_only))


class RepositoryModelHandler(RepositoryBase):
    """``POST /v2/repository/models/{m}/load|unload``: load a model of the repository (again), or unload it."""

    endpoint = "repository"

    async def handle_post(self, model: str, verb: str) -> None:
        parse_repository_call(self.optional_body(), verb)
        await self.ctx.plane.repository_call(model, verb)
        self.model_label = model  # known by now: an unknown name is a 404 above
        self.write_json({})
