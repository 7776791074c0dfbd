"""Handlers for the pages around the protocols: home, OpenAPI, docs and Prometheus metrics."""

from __future__ import annotations

from modelserver import openapi, pages
from modelserver.errors import NotReady
from modelserver.server.base import BaseHandler


class HomeHandler(BaseHandler):
    protocol, endpoint = "other", "home"

    async def get(self) -> None:
        repo = self.ctx.repository
        servables = []
        for name in repo.models:
            try:
                servables.append(repo.resolve(name))
            except NotReady:
                continue
        versions = {n: list(e.versions) for n, e in repo.models.items()}
        base = f"{self.request.protocol}://{self.request.host}"
        s = self.ctx.settings
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            pages.render_home(servables, versions, base, ready=self.ctx.ready, protocol=s.protocol, auth=bool(self.ctx.api_keys))
        )


class OpenAPIHandler(BaseHandler):
    protocol, endpoint, needs_auth = "other", "openapi", False

    async def get(self) -> None:
        self.write_json(openapi.build(self.application.settings["endpoints"]))


class DocsHandler(BaseHandler):
    protocol, endpoint, needs_auth = "other", "docs", False

    async def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(pages.render_docs(openapi.build(self.application.settings["endpoints"])))


class MetricsHandler(BaseHandler):
    protocol, endpoint, needs_auth = "other", "metrics", False

    async def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.render())
