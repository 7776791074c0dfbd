"""The gRPC transport: the Open Inference Protocol's ``inference.GRPCInferenceService``, TensorFlow
Serving's ``PredictionService`` (Predict, GetModelMetadata) and ``ModelService`` (GetModelStatus),
the standard health service and server reflection, on ``--grpc-port`` in the HTTP server's event loop.

Thin, like the HTTP transports: each call goes through a ``RequestCycle`` (request id, in-flight
count, the API key from the ``authorization`` or ``x-api-key`` metadata, metrics with
``protocol="grpc"`` and the access line), reaches the model through the data plane (so gRPC and
HTTP requests share its batching), and any error becomes a status code and message in
``errors.grpc_error``. A request is at most ``max_body_bytes`` (RESOURCE_EXHAUSTED above, from
grpc itself); the client's deadline ends a call as it ends (DEADLINE_EXCEEDED); while the server
drains, health answers NOT_SERVING and calls in flight finish.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tornado.httputil import HTTPHeaders
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from modelserver import __version__
from modelserver.codecs import v2grpc
from modelserver.errors import ModelServerError, NotFound, NotReady
from modelserver.runtime.repository import READY
from modelserver.server.context import ServerContext
from modelserver.server.errors import grpc_error, log_failure, log_unhandled
from modelserver.server.pipeline import RequestCycle

log = logging.getLogger("modelserver")
T = TypeVar("T")

SERVICE = "inference.GRPCInferenceService"
EXTENSIONS = ["binary_tensor_data", "model_repository"]


class Calls:
    """What every RPC goes through (see the module doc)."""

    service = SERVICE

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def call(self, context: aio.ServicerContext, endpoint: str, model: str, work: Callable[[RequestCycle], Awaitable[T]],
                   *, needs_auth: bool = True) -> T:
        """Run one RPC inside its request cycle; an error ends it with its status code."""
        headers = HTTPHeaders()
        for key, value in context.invocation_metadata() or ():
            if isinstance(value, str):
                headers.add(key, value)
        cycle = RequestCycle(self.ctx, "POST", f"/{self.service}/{endpoint}", headers)
        cycle.start(None)
        context.set_trailing_metadata(tuple((k.lower(), v) for k, v in cycle.answer_headers().items()))
        status = 200
        try:
            cycle.admit(headers, needs_auth)
            return await work(cycle)
        except Exception as e:
            status, code, message = grpc_error(e)
            if not isinstance(e, ModelServerError):
                log_unhandled(e, cycle.request_id)
            elif status >= 500:
                log_failure(e, cycle.request_id)
            await context.abort(getattr(grpc.StatusCode, code), message)
            raise  # abort raises; this line is not reached
        finally:
            cycle.close(status, model, "grpc", endpoint)

class InferenceService(Calls, pb_grpc.GRPCInferenceServiceServicer):
    """The Open Inference Protocol's RPCs (Triton's further ones answer UNIMPLEMENTED)."""

    async def ServerLive(self, request: pb.ServerLiveRequest, context: aio.ServicerContext) -> pb.ServerLiveResponse:
        async def live(cycle: RequestCycle) -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self.call(context, "health", "", live, needs_auth=False)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: aio.ServicerContext) -> pb.ServerReadyResponse:
        async def ready(cycle: RequestCycle) -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=self.ctx.ready)

        return await self.call(context, "health", "", ready, needs_auth=False)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: aio.ServicerContext) -> pb.ModelReadyResponse:
        async def ready(cycle: RequestCycle) -> pb.ModelReadyResponse:
            try:
                self.ctx.plane.servable(request.name, request.version or None)
            except NotReady:
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=not self.ctx.draining)

        return await self.call(context, "ready", request.name, ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: aio.ServicerContext
                             ) -> pb.ServerMetadataResponse:
        async def metadata(cycle: RequestCycle) -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(name="modelserver", version=__version__, extensions=EXTENSIONS)

        return await self.call(context, "metadata", "", metadata)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: aio.ServicerContext
                            ) -> pb.ModelMetadataResponse:
        async def metadata(cycle: RequestCycle) -> pb.ModelMetadataResponse:
            plane = self.ctx.plane
            servable = await plane.use(request.name, request.version or None)
            versions = list(plane.repository.entry(servable.name).versions)
            return v2grpc.model_metadata(servable, versions, plane.signature(servable, None))

        return await self.call(context, "metadata", request.name, metadata)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> pb.ModelInferResponse:
        async def infer(cycle: RequestCycle) -> pb.ModelInferResponse:
            plane = self.ctx.plane
            servable = await plane.use(request.model_name, request.model_version or None, holder=cycle)
            signature = request.parameters.get("signature_name")
            sig = plane.signature(servable, v2grpc.parameter(signature) if signature is not None else None)
            decoded = v2grpc.decode(request, sig, max_instances=self.ctx.settings.max_instances)
            (outputs,) = await plane.predict(servable, sig, [decoded.inputs])
            return v2grpc.encode(decoded, outputs, servable.name, servable.version)

        return await self.call(context, "infer", request.model_name, infer)

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: aio.ServicerContext
                              ) -> pb.RepositoryIndexResponse:
        async def index(cycle: RequestCycle) -> pb.RepositoryIndexResponse:
            ready_only = v2grpc.repository_index(request)
            return v2grpc.index_response(await self.ctx.plane.repository_index(ready_only))

        return await self.call(context, "repository", "", index)

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context: aio.ServicerContext
                                  ) -> pb.RepositoryModelLoadResponse:
        await self._repository_call(request, context, "load")
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest, context: aio.ServicerContext
                                    ) -> pb.RepositoryModelUnloadResponse:
        await self._repository_call(request, context, "unload")
        return pb.RepositoryModelUnloadResponse()

    async def _repository_call(self, request: pb.RepositoryModelLoadRequest | pb.RepositoryModelUnloadRequest,
                               context: aio.ServicerContext, verb: str) -> None:
        async def run(cycle: RequestCycle) -> None:
            await self.ctx.plane.repository_call(v2grpc.repository_call(request, verb), verb)

        await self.call(context, "repository", request.model_name, run)


def tfserving_services(ctx: ServerContext) -> list[tuple[Any, Callable[[Any, aio.Server], None], str]]:
    """TensorFlow Serving's PredictionService and ModelService (servicer, how it is added, its
    name), when ``tensorflow-serving-api`` is installed; else none, said once in the log."""
    try:
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        from modelserver.codecs import tfserving
    except ImportError as e:
        log.warning("TensorFlow Serving's gRPC services are not served: tensorflow-serving-api is missing",
                    extra={"error": str(e)})
        return []

    class PredictionService(Calls, prediction_service_pb2_grpc.PredictionServiceServicer):
        service = "tensorflow.serving.PredictionService"

        async def Predict(self, request: Any, context: aio.ServicerContext) -> Any:
            async def predict(cycle: RequestCycle) -> Any:
                plane = self.ctx.plane
                version, label = tfserving.version_of(request.model_spec)
                servable = await plane.use(request.model_spec.name, version, label, holder=cycle)
                sig = plane.signature(servable, request.model_spec.signature_name or None)
                names = tfserving.outputs_wanted(request, sig)
                tensors = tfserving.decode(request, sig, max_instances=self.ctx.settings.max_instances)
                (outputs,) = await plane.predict(servable, sig, [tensors])
                return tfserving.encode(outputs, names, servable, sig)

            return await self.call(context, "predict", request.model_spec.name, predict)

        async def GetModelMetadata(self, request: Any, context: aio.ServicerContext) -> Any:
            async def metadata(cycle: RequestCycle) -> Any:
                version, label = tfserving.version_of(request.model_spec)
                servable = await self.ctx.plane.use(request.model_spec.name, version, label)
                return tfserving.metadata(request, servable)

            return await self.call(context, "metadata", request.model_spec.name, metadata)

    class ModelService(Calls, model_service_pb2_grpc.ModelServiceServicer):
        service = "tensorflow.serving.ModelService"

        async def GetModelStatus(self, request: Any, context: aio.ServicerContext) -> Any:
            async def status(cycle: RequestCycle) -> Any:
                entry = self.ctx.plane.repository.entry(request.model_spec.name)
                version, _ = tfserving.version_of(request.model_spec)
                rows = [(n, v.state, v.error) for n, v in sorted(entry.versions.items())
                        if version is None or str(n) == version]
                if not rows:
                    raise NotFound(f"model {entry.name!r} has no version {version}; it has {sorted(entry.versions)}")
                return tfserving.status(rows)

            return await self.call(context, "ready", request.model_spec.name, status)

    return [
        (PredictionService(ctx), prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server,
         PredictionService.service),
        (ModelService(ctx), model_service_pb2_grpc.add_ModelServiceServicer_to_server, ModelService.service),
    ]


class Health(health.aio.HealthServicer):
    """The standard health service; with a model repository, a model's status is read when asked
    (its models load and unload while the server runs)."""

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.serving = False

    async def Check(self, request: health_pb2.HealthCheckRequest, context: aio.ServicerContext
                    ) -> health_pb2.HealthCheckResponse:
        plane = self.ctx.plane
        entry = plane.repository.models.get(request.service) if plane.manager is not None else None
        if entry is None:
            return await super().Check(request, context)
        up = self.serving and entry.status()[0] == READY
        return health_pb2.HealthCheckResponse(
            status=health_pb2.HealthCheckResponse.SERVING if up else health_pb2.HealthCheckResponse.NOT_SERVING)


class GRPCServer:
    """The gRPC server of one server process, with its health service kept in step with readiness."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.server = aio.server(options=[
            ("grpc.max_receive_message_length", s.max_body_bytes),
            ("grpc.max_send_message_length", -1),
            # worker processes share the port, as they share the HTTP one; a lone server does not
            # (another one on the same port would silently take half its calls)
            ("grpc.so_reuseport", 1 if ctx.workers is not None else 0),
        ])
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(ctx), self.server)
        names = [SERVICE]
        for servicer, add, name in tfserving_services(ctx):
            add(servicer, self.server)
            names.append(name)
        self.health = Health(ctx)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.services = list(names)  # each has a health status, as the server and each model have
        names += [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self.server)
        self.port = self.server.add_insecure_port(f"{s.host}:{s.grpc_port}")

    async def start(self) -> None:
        await self.set_serving(False)
        await self.server.start()

    async def set_serving(self, serving: bool) -> None:
        """Health for the server ("") and for each model by name: SERVING once loaded, NOT_SERVING
        while loading and from the start of a drain."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.serving = serving
        for service in ["", *self.services]:
            await self.health.set(service, status)
        for name, entry in self.ctx.plane.repository.models.items():
            loaded = serving and entry.ready
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING if loaded else
                                  health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)

