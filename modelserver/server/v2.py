"""V2 (Open Inference Protocol) handlers: health, server and model metadata, readiness, infer, explain."""

from __future__ import annotations

from typing import Any

from modelserver import __version__
from modelserver.codecs import fastparse, jsonio
from modelserver.codecs import v2 as codec
from modelserver.codecs.v1 import signature_name
from modelserver.errors import NotReady
from modelserver.runtime.base import Servable, Signature
from modelserver.server.base import BaseHandler
from modelserver.server.inference import InferenceExchange, InferenceHandler

EXTENSIONS = ["binary_tensor_data"]


async def answer_v2(
    h: InferenceExchange, servable: Servable, sig: Signature, body: Any, binary: bytes, *, explain: bool
) -> None:
    """Decode, run and answer one V2 (or single-tensor) request; shared by every V2-speaking path."""
    limit = h.ctx.settings.max_instances
    if codec.is_single_tensor(body):
        request = codec.decode_single(body, sig, max_instances=limit)
    else:
        request = codec.decode(body, binary, sig, max_instances=limit)
    if explain:
        target = request.parameters.get("target")
        (outputs,) = await h.explain_batches(servable, sig, [request.inputs], target)
    else:
        (outputs,) = await h.run_batches(servable, sig, [request.inputs])
    header, tail = codec.encode(request, outputs, servable.name, servable.version, explain=explain)
    if not tail:
        return h.write_json(header)
    head = jsonio.dumps(header)
    h.respond(head + tail, content_type="application/octet-stream", headers={codec.HEADER_LENGTH: str(len(head))})


class InferHandler(InferenceExchange):
    """``POST /v2/models/{m}[/versions/{v}]/infer|explain``."""

    protocol = "v2"

    async def post(self, model: str, version: str | None = None, verb: str = "infer") -> None:  # type: ignore[override]
        self.endpoint = verb
        servable = self.servable(model, version)
        head, tail = codec.split_binary(self.body, self.headers.get(codec.HEADER_LENGTH))
        body = fastparse.loads(head)
        sig = self.signature(servable, signature_name(body))
        await answer_v2(self, servable, sig, body, tail, explain=verb == "explain")


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
        reason = "shutting down" if self.ctx.draining else "models are not loaded yet"
        workers = self.ctx.workers
        if workers is not None and not self.ctx.draining and self.ctx.repository.ready:
            reason = f"workers still loading their models: {workers.ready_count} of {workers.size} ready"
        failed = [
            f"{e.name} version {v.version}: {v.error}"
            for e in self.ctx.repository.models.values() for v in e.versions.values() if v.error
        ]
        if failed:
            reason = "model failed to load: " + "; ".join(failed)
        self.write_json({"ready": False, "error": reason}, status=503)


class ServerMetadataHandler(BaseHandler):
    """``GET /v2``: server name, version and protocol extensions."""

    protocol, endpoint = "v2", "metadata"

    async def get(self) -> None:
        self.write_json({"name": "modelserver", "version": __version__, "extensions": EXTENSIONS})


def model_metadata(servable: Servable, versions: list[int], sig: Signature) -> dict[str, Any]:
    return {
        "name": servable.name,
        "versions": [str(v) for v in versions],
        "platform": servable.platform,
        "inputs": [t.describe() for t in sig.inputs],
        "outputs": [t.describe() for t in sig.outputs],
        "parameters": {"signature_name": sig.name, "signatures": sorted(servable.signatures)},
    }


class ModelMetadataHandler(InferenceHandler):
    """``GET /v2/models/{m}[/versions/{v}]``: the default signature's tensors and the versions."""

    protocol, endpoint = "v2", "metadata"

    async def get(self, model: str, version: str | None = None) -> None:
        servable = self.servable(model, version)
        versions = list(self.ctx.repository.entry(model).versions)
        self.write_json(model_metadata(servable, versions, self.signature(servable, None)))


class ModelReadyHandler(InferenceHandler):
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
