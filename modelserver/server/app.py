"""The route table, the tornado application, and the server's lifecycle (load, serve, drain, exit).

The route table is the single source for both tornado's routing and the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from pathlib import Path
from typing import NamedTuple

import tornado.httpserver
import tornado.web

from modelserver.dispatch import Dispatcher
from modelserver.metrics import Metrics
from modelserver.openapi import Endpoint
from modelserver.runtime.base import Servable
from modelserver.runtime.repository import ModelRepository
from modelserver.server import pages, v1, v2
from modelserver.server.base import NotFoundHandler
from modelserver.server.context import ServerContext
from modelserver.settings import Settings

log = logging.getLogger("modelserver")

M = r"(?P<model>[^/:]+)"
VER = r"(?:/versions/(?P<version>[^/:]+))?"
VER_OR_LABEL = r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
#: tornado refuses bodies over this itself; the configured limit is enforced (413) per request
HARD_BODY_LIMIT = 1 << 40


class Route(NamedTuple):
    pattern: str
    handler: type[tornado.web.RequestHandler]
    docs: tuple[Endpoint, ...]


def _ep(method: str, path: str, tag: str, summary: str) -> Endpoint:
    return Endpoint(method, path, tag, summary)


ROUTES: tuple[Route, ...] = (
    Route(r"/", pages.HomeHandler, (_ep("get", "/", "pages", "home page: signatures and curl examples"),)),
    Route(r"/openapi\.json", pages.OpenAPIHandler, (_ep("get", "/openapi.json", "pages", "this document"),)),
    Route(r"/docs", pages.DocsHandler, (_ep("get", "/docs", "pages", "endpoint list"),)),
    Route(r"/metrics", pages.MetricsHandler, (_ep("get", "/metrics", "pages", "Prometheus metrics"),)),
    Route(r"/v1/models", v1.ListHandler, (_ep("get", "/v1/models", "v1", "list models"),)),
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
    Route(r"/v2/health/live", v2.LiveHandler, (_ep("get", "/v2/health/live", "v2", "liveness"),)),
    Route(r"/v2/health/ready", v2.ReadyHandler, (_ep("get", "/v2/health/ready", "v2", "readiness"),)),
    Route(r"/v2", v2.ServerMetadataHandler, (_ep("get", "/v2", "v2", "server metadata"),)),
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


def make_app(ctx: ServerContext) -> tornado.web.Application:
    return tornado.web.Application(
        [(r.pattern, r.handler, {"ctx": ctx}) for r in ROUTES],
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
        endpoints=[e for r in ROUTES for e in r.docs],
        compress_response=False,
    )


def default_loader(name: str, version: int, path: Path) -> Servable:
    from modelserver.runtime.tensorflow import load_savedmodel  # heavy import, off the IO loop

    return load_savedmodel(name, version, path)


def build_context(settings: Settings, model_path: Path, name: str) -> ServerContext:
    repository = ModelRepository()
    repository.register(name, model_path, settings.labels())
    metrics = Metrics()
    return ServerContext(
        settings=settings,
        repository=repository,
        dispatcher=Dispatcher(settings, metrics),
        metrics=metrics,
        api_keys=settings.api_key_set(),
    )


def start_draining(ctx: ServerContext) -> None:
    """Readiness answers 503 and every answer closes its connection; requests are still served.

    SIGUSR1 (sent by ``modelserver drain`` in a preStop hook) starts this before SIGTERM, so
    clients move to other pods while this one still answers.
    """
    if not ctx.draining:
        ctx.draining = True
        ctx.metrics.ready.set(0)
        log.info("draining", extra={"in_flight": ctx.in_flight})


async def serve(ctx: ServerContext) -> None:
    """Listen, load the models in the background; on SIGTERM finish in-flight requests and return."""
    s = ctx.settings
    server = tornado.httpserver.HTTPServer(make_app(ctx), max_body_size=HARD_BODY_LIMIT, xheaders=True)
    server.listen(s.port, s.host)
    log.info("listening", extra={"host": s.host, "port": s.port, "models": list(ctx.repository.models)})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: start_draining(ctx))

    async def load() -> None:
        await loop.run_in_executor(None, lambda: ctx.repository.load_all(default_loader, warmup=s.warmup))
        # The loaded models (TensorFlow's graphs and functions) are hundreds of thousands of
        # long-lived objects: move them out of the collector's sight so that its full
        # collections, which run every so often under load, do not walk them each time.
        gc.collect()
        gc.freeze()
        if ctx.repository.ready:
            ctx.metrics.ready.set(1)
            log.info("ready", extra={"url": f"http://{s.host}:{s.port}/"})

    loading = asyncio.ensure_future(load())
    await stop.wait()
    start_draining(ctx)
    deadline = time.monotonic() + s.drain_seconds
    while ctx.in_flight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    server.stop()
    await server.close_all_connections()
    loading.cancel()
    ctx.dispatcher.shutdown()
    log.info("stopped", extra={"unfinished": ctx.in_flight})

