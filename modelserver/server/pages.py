"""The pages around the protocols, served by tornado handlers: home, OpenAPI, docs and Prometheus metrics."""

from __future__ import annotations

import json

from tornado.httputil import HTTPHeaders

from modelserver import openapi, pages
from modelserver.errors import InvalidInput, NotReady
from modelserver.server.base import BaseHandler


def forwarded_scheme(headers: HTTPHeaders, default: str) -> str:
    """The scheme a proxy in front says the client used (``X-Forwarded-Proto`` or ``X-Scheme``), else ``default``.

    Read here, for the home page's examples, rather than by tornado's ``xheaders`` on every request.
    """
    given = headers.get("X-Scheme", headers.get("X-Forwarded-Proto", default))
    scheme = given.split(",")[-1].strip().lower()
    return scheme if scheme in ("http", "https") else default


class HomeHandler(BaseHandler):
    protocol, endpoint = "other", "home"

    async def get(self) -> None:
        repo = self.ctx.plane.repository
        servables = []
        for name in repo.models:
            try:
                servables.append(repo.resolve(name))
            except NotReady:
                continue
        versions = {n: list(e.versions) for n, e in repo.models.items()}
        base = f"{forwarded_scheme(self.request.headers, self.request.protocol)}://{self.request.host}"
        s = self.ctx.settings
        auth = bool(self.ctx.api_keys)
        mapping = self.ctx.plane.mapping
        section = None
        if mapping is not None:
            example = json.loads(s.mapping_example) if s.mapping_example else None
            section = pages.mapping_section(mapping.request_template, mapping.response_template, example, base, auth)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        grpc = f"{self.request.host_name}:{self.ctx.grpc_port}" if self.ctx.grpc_port else None
        self.finish(
            pages.render_home(servables, versions, base, ready=self.ctx.ready, protocol=self.ctx.protocol, auth=auth,
                              mapping=section, grpc=grpc)
        )


class OpenAPIHandler(BaseHandler):
    protocol, endpoint, needs_auth = "other", "openapi", False

    async def get(self) -> None:
        self.write_json(openapi.build(self.application.settings["endpoints"], mapped=self.ctx.plane.mapping is not None))


class DocsHandler(BaseHandler):
    """The endpoint list with try-it forms. Public like /openapi.json, so with API keys set it does not
    fill in the model's name and example bodies (the home page, behind the key, has them)."""

    protocol, endpoint, needs_auth = "other", "docs", False

    async def get(self) -> None:
        spec = openapi.build(self.application.settings["endpoints"], mapped=self.ctx.plane.mapping is not None)
        auth = bool(self.ctx.api_keys)
        servable = None
        if not auth:
            repo = self.ctx.plane.repository
            try:
                servable = repo.resolve(repo.default_name)
            except (NotReady, InvalidInput):  # not loaded yet, or a repository of several models
                pass
        s = self.ctx.settings
        mapped = json.loads(s.mapping_example) if s.mapping_example and self.ctx.plane.mapping else None
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(pages.render_docs(spec, servable, labels=sorted(s.labels()), mapped=mapped, auth=auth))


class MetricsHandler(BaseHandler):
    protocol, endpoint, needs_auth = "other", "metrics", False

    async def get(self) -> None:
        if self.ctx.metrics.multiprocess:
            self.ctx.metrics.in_flight.set(self.ctx.in_flight)  # this worker's, fresh; the others' are sampled
        if self.ctx.plane.manager is not None:
            self.ctx.plane.manager.gauges()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.render())
