"""The route table, the tornado application, and the server's lifecycle (load, serve, drain, exit).

The route table is the single source for both tornado's routing and the OpenAPI document.
``build_context`` assembles one server process (repository, dispatcher, data plane, metrics);
``serve`` runs it until SIGTERM; ``run_loop`` runs a coroutine on uvloop or asyncio.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NamedTuple

import tornado.ioloop
import tornado.web

from modelserver.codecs import mapping
from modelserver.contract import LIVE_PATH, METRICS_PATH, READY_PATH
from modelserver.dataplane import DataPlane
from modelserver.dispatch import Dispatcher
from modelserver.manager import ModelManager
from modelserver.metrics import Metrics
from modelserver.openapi import Endpoint
from modelserver.readiness import WorkerGroup
from modelserver.runtime import formats
from modelserver.runtime.repository import ModelRepository
from modelserver.server import openai, pages, v1, v2
from modelserver.server.base import NotFoundHandler
from modelserver.server.connection import HTTPServer
from modelserver.server.context import ServerContext
from modelserver.server.exchange import Exchange, Router
from modelserver.settings import Settings

log = logging.getLogger("modelserver")

M = r"(?P<model>[^/:]+)"
VER = r"(?:/versions/(?P<version>[^/:]+))?"
VER_OR_LABEL = r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
#: at shutdown, a connection that has waited this long for a request is closed
IDLE_GRACE_SECONDS = 1.0
#: tornado refuses bodies over this itself; the configured limit is enforced (413) per request
HARD_BODY_LIMIT = 1 << 40


class Route(NamedTuple):
    pattern: str
    #: a tornado handler, or an Exchange for the inference POSTs (served below tornado.web)
    handler: type[tornado.web.RequestHandler] | type[Exchange]
    docs: tuple[Endpoint, ...]


def _ep(method: str, path: str, tag: str, summary: str) -> Endpoint:
    return Endpoint(method, path, tag, summary)


ROUTES: tuple[Route, ...] = (
    Route(r"/", pages.HomeHandler, (_ep("get", "/", "pages", "home page: signatures and curl examples"),)),
    Route(r"/openapi\.json", pages.OpenAPIHandler, (_ep("get", "/openapi.json", "pages", "this document"),)),
    Route(r"/docs", pages.DocsHandler, (_ep("get", "/docs", "pages", "endpoint list"),)),
    Route(METRICS_PATH, pages.MetricsHandler, (_ep("get", METRICS_PATH, "pages", "Prometheus metrics"),)),
    Route(r"/v1/models", v1.ListHandler, (_ep("get", "/v1/models", "v1", "list models (V1 and OpenAI forms in one body)"),)),
    Route(r"/openai/v1/models", openai.ModelsHandler, (_ep("get", "/openai/v1/models", "openai", "list models"),)),
    Route(rf"/openai/v1/models/{M}", openai.ModelsHandler,
          (_ep("get", "/openai/v1/models/{model}", "openai", "one model"),)),
    Route(
        r"/(?:openai/)?(?:v1/)?completions",
        openai.CompletionsHandler,
        tuple(_ep("post", f"{p}/completions", "openai", "text completion (SSE when stream is true)")
              for p in ("/v1", "/openai/v1", "")),
    ),
    Route(
        r"/(?:openai/)?(?:v1/)?chat/completions",
        openai.ChatHandler,
        tuple(_ep("post", f"{p}/chat/completions", "openai", "chat completion (SSE when stream is true)")
              for p in ("/v1", "/openai/v1", "")),
    ),
    Route(
        r"/(?:openai/)?(?:v1/)?embeddings",
        openai.EmbeddingsHandler,
        tuple(_ep("post", f"{p}/embeddings", "openai", "embeddings") for p in ("/v1", "/openai/v1", "")),
    ),
    Route(r"/tokenize", openai.TokenizeHandler,
          (_ep("post", "/tokenize", "openai", "token ids of a prompt or of chat messages (vLLM's form)"),)),
    Route(r"/detokenize", openai.DetokenizeHandler, (_ep("post", "/detokenize", "openai", "text of token ids"),)),
    Route(
        rf"/v1/models/{M}{VER_OR_LABEL}:(?P<verb>predict|explain)",
        v1.PredictHandler,
        tuple(
            _ep("post", f"/v1/models/{{model}}{sub}:{verb}", "v1", f"{verb} (row or columnar format)")
            for sub in ("", "/versions/{version}", "/labels/{label}")
            for verb in ("predict", "explain")
        ),
    ),
    Route(
        rf"/v1/models/{M}{VER_OR_LABEL}/metadata",
        v1.MetadataHandler,
        (_ep("get", "/v1/models/{model}/metadata", "v1", "signature defs"),
         _ep("get", "/v1/models/{model}/versions/{version}/metadata", "v1", "signature defs of a version")),
    ),
    Route(
        rf"/v1/models/{M}{VER_OR_LABEL}",
        v1.StatusHandler,
        (_ep("get", "/v1/models/{model}", "v1", "version status"),
         _ep("get", "/v1/models/{model}/versions/{version}", "v1", "status of a version"),
         _ep("get", "/v1/models/{model}/labels/{label}", "v1", "status of a labelled version")),
    ),
    Route(LIVE_PATH, v2.LiveHandler, (_ep("get", LIVE_PATH, "v2", "liveness"),)),
    Route(READY_PATH, v2.ReadyHandler, (_ep("get", READY_PATH, "v2", "readiness"),)),
    Route(r"/v2", v2.ServerMetadataHandler, (_ep("get", "/v2", "v2", "server metadata"),)),
    Route(r"/v2/repository/index", v2.RepositoryIndexHandler,
          (_ep("post", "/v2/repository/index", "v2", "the repository's models with their states"),)),
    Route(
        rf"/v2/repository/models/{M}/(?P<verb>load|unload)",
        v2.RepositoryModelHandler,
        (_ep("post", "/v2/repository/models/{model}/load", "v2", "load a model of the repository"),
         _ep("post", "/v2/repository/models/{model}/unload", "v2", "unload a model of the repository")),
    ),
    Route(
        rf"/v2/models/{M}{VER}/(?P<verb>infer|explain)",
        v2.InferHandler,
        tuple(
            _ep("post", f"/v2/models/{{model}}{sub}/{verb}", "v2", f"{verb} (JSON or binary tensors)")
            for sub in ("", "/versions/{version}")
            for verb in ("infer", "explain")
        ),
    ),
    Route(
        rf"/v2/models/{M}{VER}/ready",
        v2.ModelReadyHandler,
        (_ep("get", "/v2/models/{model}/ready", "v2", "model readiness"),
         _ep("get", "/v2/models/{model}/versions/{version}/ready", "v2", "version readiness")),
    ),
    Route(
        rf"/v2/models/{M}{VER}",
        v2.ModelMetadataHandler,
        (_ep("get", "/v2/models/{model}", "v2", "model metadata"),
         _ep("get", "/v2/models/{model}/versions/{version}", "v2", "version metadata")),
    ),
    Route(
        r"/(?P<verb>predict|explain)",
        v1.PredictHandler,
        (_ep("post", "/predict", "v1", "predict with the served model (V1, V2 or single-tensor body)"),
         _ep("post", "/explain", "v1", "explain with the served model (V1, V2 or single-tensor body)")),
    ),
    Route(
        r"/(?P<signature>[^/]+)/(?P<verb>predict|explain)",
        v1.PredictHandler,
        (_ep("post", "/{signature}/predict", "v1", "predict with the signature named in the path"),
         _ep("post", "/{signature}/explain", "v1", "explain with the signature named in the path")),
    ),
)


def make_app(ctx: ServerContext) -> Router:
    """The server's request delegate: the inference exchanges (matched by path alone: their patterns
    match no other route), then a tornado Application with every other route in the table's order."""
    exchanges = [(r.pattern, r.handler) for r in ROUTES if issubclass(r.handler, Exchange)]
    app = tornado.web.Application(
        [
            (r.pattern, r.handler, {"ctx": ctx})
            for r in ROUTES if not issubclass(r.handler, Exchange)
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
        endpoints=[e for r in ROUTES for e in r.docs],
        compress_response=False,
    )
    return Router(ctx, exchanges, app)


def build_context(settings: Settings, model_path: Path | None, name: str, workers: WorkerGroup | None = None
                  ) -> ServerContext:
    """Everything one server process needs; ``workers`` when it is one of several (``--workers``).
    With ``settings.model_repository`` (and no ``model_path``), the models of a repository."""
    if settings.tf_threads:
        from modelserver.runtime.tensorflow import set_threads

        set_threads(settings.tf_threads)
    metrics = Metrics(multiprocess=workers is not None)
    dispatcher = Dispatcher(settings, metrics)
    manager = None
    if model_path is None:
        repository = ModelRepository(root=settings.model_repository)
        manager = ModelManager(repository, settings, metrics, formats.loader(settings), forget=dispatcher.forget)
    else:
        repository = ModelRepository()
        repository.register(name, model_path, settings.labels())
    return ServerContext(
        settings=settings,
        plane=DataPlane(settings, repository, dispatcher, mapping.from_settings(settings), manager),
        metrics=metrics,
        api_keys=settings.api_key_set(),
        workers=workers,
    )


def start_draining(ctx: ServerContext) -> None:
    """Readiness answers 503 and every answer closes its connection; requests are still served.

    SIGUSR1 (sent by ``modelserver drain`` in a preStop hook) starts this before SIGTERM, so
    clients move to other pods while this one still answers.
    """
    if not ctx.draining:
        ctx.draining = True
        ctx.metrics.ready.set(0)
        if ctx.workers is not None:
            ctx.workers.set_ready(False)
        log.info("draining", extra={"in_flight": ctx.in_flight})


async def serve(ctx: ServerContext, sockets: list[socket.socket] | None = None) -> None:
    """Listen (or serve on ``sockets`` bound by a parent process), load the models in the background;
    on SIGTERM finish in-flight requests and return."""
    s = ctx.settings
    server = HTTPServer(
        make_app(ctx), max_body_size=HARD_BODY_LIMIT, max_connections=s.max_connections,
        idle_timeout=s.idle_timeout_seconds, body_timeout=s.body_timeout_seconds, max_header_bytes=s.max_header_bytes,
    )
    if sockets is None:
        server.listen(s.port, s.host)
    else:
        server.add_sockets(sockets)
    repository = ctx.plane.repository
    grpc_server = None
    if s.grpc_port:
        from modelserver.server.rpc import GRPCServer  # grpc's libraries load only when it is served

        try:
            grpc_server = GRPCServer(ctx)
        except RuntimeError as e:  # the port is taken (another server on this machine, say): HTTP goes on
            log.error("gRPC is not served: its port could not be bound", extra={
                "grpc_port": s.grpc_port, "error": str(e), "hint": "choose another with --grpc-port (0: none)"})
        else:
            await grpc_server.start()
            ctx.grpc_port = grpc_server.port
    where = {"host": s.host, "port": s.port, "models": list(repository.models),
             "max_connections": server.max_connections}
    if grpc_server is not None:
        where["grpc_port"] = grpc_server.port
    if ctx.workers is not None:
        where.update(worker=ctx.workers.index, pid=os.getpid())
        # the in-flight gauge is a file shared with the other workers: sampled each second, not per request
        tornado.ioloop.PeriodicCallback(lambda: ctx.metrics.in_flight.set(ctx.in_flight), 1000).start()
    log.info("listening", extra=where)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def drain() -> None:
        start_draining(ctx)
        if grpc_server is not None:
            asyncio.ensure_future(grpc_server.set_serving(False))

    loop.add_signal_handler(signal.SIGUSR1, drain)

    async def load() -> None:
        manager = ctx.plane.manager
        if manager is not None:
            await manager.start()
        else:
            await loop.run_in_executor(None, lambda: repository.load_all(formats.loader(s), warmup=s.warmup))
        # The loaded models (TensorFlow's graphs and functions) are hundreds of thousands of
        # long-lived objects: move them out of the collector's sight so that its full
        # collections, which run every so often under load, do not walk them each time.
        for entry in repository.models.values() if manager is None else ():  # the manager watches its own
            for vs in entry.versions.values():
                engine = getattr(vs.servable, "engine", None)
                if engine is not None:
                    ctx.metrics.watch_engine(entry.name, engine)
        gc.collect()
        gc.freeze()  # a repository's manager unfreezes to collect an unloaded model, and freezes again
        if repository.ready and not ctx.draining:
            if grpc_server is not None:
                await grpc_server.set_serving(True)
            ctx.metrics.ready.set(1)
            if ctx.workers is not None:
                ctx.workers.set_ready(True)
            log.info("ready", extra={"url": f"http://{s.host}:{s.port}/"})
        # the process for large bodies, started now rather than by the first one (off the loop:
        # starting it waits for multiprocessing's fork server)
        await loop.run_in_executor(None, ctx.plane.reader.start)

    loading = asyncio.ensure_future(load())
    await stop.wait()
    # Draining (begun by SIGUSR1 from a preStop hook, or here): readiness answers 503 and every answer
    # closes its connection, so clients (and load balancers) move elsewhere. The server keeps
    # listening until nothing is in flight and every connection has ended: after its answer, or, for
    # one idle for IDLE_GRACE_SECONDS, closed here (its client is not sending; closing a connection a
    # client is about to reuse, or the listener while clients still connect, would lose requests).
    drain()
    deadline = time.monotonic() + s.drain_seconds
    while (ctx.in_flight > 0 or server.connections) and time.monotonic() < deadline:
        server.close_idle(IDLE_GRACE_SECONDS)
        await asyncio.sleep(0.05)
    if grpc_server is not None:  # nothing in flight: calls still arriving get UNAVAILABLE
        await grpc_server.stop(grace=max(0.0, deadline - time.monotonic()))
    server.stop()
    await server.close_all_connections()
    loading.cancel()
    repository.close()
    ctx.plane.close()
    ctx.plane.dispatcher.shutdown()
    log.info("stopped", extra={"unfinished": ctx.in_flight})


def run_loop(main: Coroutine[Any, Any, None], kind: str) -> None:
    """Run the server on uvloop (faster at everything the IO loop does) or on asyncio's own loop."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
