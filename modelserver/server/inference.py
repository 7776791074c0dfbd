"""Shared steps of every inference handler: pick the model and signature, run, explain.

The protocol handlers (``v1``, ``v2``, ``openai``) only translate bodies; ``ModelAccess`` does the
rest, so every protocol resolves models and calls the dispatcher the same way, whether it is served
on an ``Exchange`` (the inference POSTs) or on a tornado ``RequestHandler`` (everything else).
"""

from __future__ import annotations

from typing import Any

from modelserver.codecs.tensors import batch_rows
from modelserver.errors import InvalidInput
from modelserver.runtime.base import Servable, Signature, Tensors, get_signature
from modelserver.server.base import BaseHandler
from modelserver.server.context import ServerContext
from modelserver.server.exchange import Exchange


class ModelAccess:
    """Model and signature lookup and model calls, for any request object with ``ctx`` and ``model_label``."""

    ctx: ServerContext
    model_label: str

    def servable(self, model: str | None, version: str | None = None, label: str | None = None) -> Servable:
        repo = self.ctx.repository
        name = model or repo.default_name
        servable = repo.resolve(name, version, label)
        self.model_label = name  # only served names become metric labels (bounded cardinality)
        return servable

    def signature(self, servable: Servable, name: str | None) -> Signature:
        """The named signature, else the configured default, else the model's only one."""
        if name:
            return get_signature(servable, name)
        default = self.ctx.settings.signature
        if default not in servable.signatures and len(servable.signatures) == 1:
            default = next(iter(servable.signatures))
        return get_signature(servable, default)

    async def run_batches(self, servable: Servable, sig: Signature, batches: list[Tensors]) -> list[Tensors]:
        d = self.ctx.dispatcher
        results = []
        for batch in batches:  # a loop, not an async comprehension: one coroutine less per request
            results.append(await d.predict(servable, sig.name, batch, batch_rows(batch)))
        return results

    async def explain_batches(self, servable: Servable, sig: Signature, batches: list[Tensors], target: Any) -> list[Tensors]:
        if target is not None and not isinstance(target, str):
            raise InvalidInput(f"target: expected an output name, got {target!r}")
        return [await self.ctx.dispatcher.explain(servable, sig.name, b, target) for b in batches]


class InferenceHandler(ModelAccess, BaseHandler):
    """A tornado handler that reads models: metadata, status, readiness and the OpenAI endpoints."""


class InferenceExchange(ModelAccess, Exchange):
    """An inference POST (predict, infer, explain), served below tornado.web (see ``exchange``)."""
