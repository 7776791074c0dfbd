"""The protocol-neutral data plane: resolve the model, version and signature, decode the body
with its protocol's codec, run it through the dispatcher, and encode the answer.

Every transport is a thin layer over this: the HTTP routes of V1, V2 and the seed paths hand a
``TensorCall`` to ``DataPlane.infer`` and send the ``Answer`` back; the OpenAI routes and the
metadata routes use ``servable``, ``signature`` and the dispatcher through it. No transport knows
another's codec, and nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from modelserver import reading
from modelserver.codecs import pacing, v1
from modelserver.codecs.mapping import Mapping
from modelserver.codecs.tensors import batch_rows
from modelserver.dispatch import Dispatcher
from modelserver.errors import InvalidInput
from modelserver.interface import Servable, Signature, Tensors
from modelserver.manager import Holder, ModelManager
from modelserver.reading import OFFLOAD_BYTES, Answer, Reader, Signatures, TensorCall, read_body, write_answer
from modelserver.runtime.repository import ModelRepository
from modelserver.settings import Settings

__all__ = ["Answer", "DataPlane", "TensorCall"]  # the transports' names for what they hand over
log = logging.getLogger("modelserver")
T = TypeVar("T")

#: the threads that do other long work off the IO loop (rendering a chat template over megabytes of
#: messages): one, as that work holds the GIL nearly all the time
LARGE_READS = 1


class DataPlane:
    """The served models and the one way every protocol reaches them."""

    def __init__(
        self, settings: Settings, repository: ModelRepository, dispatcher: Dispatcher, mapping: Mapping | None = None,
        manager: ModelManager | None = None,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.dispatcher = dispatcher
        #: with a model repository: what loads, unloads and holds its models
        self.manager = manager
        #: the custom mapping of the single-model paths (``/predict``, ``/explain``), if any
        self.mapping = mapping
        self._large_reads = ThreadPoolExecutor(LARGE_READS, thread_name_prefix="large-body")
        #: the process that reads large bodies and writes large answers
        self.reader = Reader()

    # -- the shared steps -----------------------------------------------------------------------
    def servable(self, model: str | None, version: str | None = None, label: str | None = None) -> Servable:
        """The loaded servable a request names (the served model when it names none); 404 or 503."""
        return self.repository.resolve(model or self.repository.default_name, version, label)

    async def use(self, model: str | None, version: str | None = None, label: str | None = None,
                  holder: Holder | None = None) -> Servable:
        """``servable``, and with a model repository: the model loaded first when the load policy is
        on-demand, and held by ``holder`` (a request cycle) until it ends, so it is not unloaded under it."""
        if self.manager is None:
            return self.servable(model, version, label)
        return await self.manager.acquire(model or self.repository.default_name, version, label, holder)

    # -- the repository extension -------------------------------------------------------------------
    async def repository_index(self, ready_only: bool) -> list[dict[str, str]]:
        """The models with their states (a repository is looked at again first: new models are listed)."""
        if self.manager is not None:
            await self.manager.scan()
        return self.repository.index(ready_only)

    async def repository_call(self, model: str, verb: str) -> None:
        """Load (``load``) or unload (``unload``) a model of the repository."""
        if self.manager is None:
            raise InvalidInput(
                f"models are loaded and unloaded only from a model repository (--model-repository); this server "
                f"serves {', '.join(repr(n) for n in self.repository.models)}, given by path"
            )
        if verb == "load":
            await self.manager.load(model)
        else:
            await self.manager.unload(model)

    def signatures(self, servable: Servable) -> Signatures:
        return Signatures(servable.name, servable.version, servable.signatures, self.settings.signature)

    def signature(self, servable: Servable, name: str | None) -> Signature:
        """The named signature, else the configured default, else the model's only one."""
        return self.signatures(servable).choose(name)

    async def predict(self, servable: Servable, sig: Signature, batches: list[Tensors]) -> list[Tensors]:
        d = self.dispatcher
        results = []
        for batch in batches:  # a loop, not an async comprehension: one coroutine less per request
            results.append(await d.predict(servable, sig.name, batch, batch_rows(batch)))
        return results

    async def explain(self, servable: Servable, sig: Signature, batches: list[Tensors], target: Any) -> list[Tensors]:
        if target is not None and not isinstance(target, str):
            raise InvalidInput(f"target: expected an output name, got {target!r}")
        for batch in batches:
            if any(a.ndim and a.shape[0] == 0 for a in batch.values()):
                raise InvalidInput("explain needs at least one row to explain, got an empty batch")
        return [await self.dispatcher.explain(servable, sig.name, b, target) for b in batches]

    # -- tensor requests ------------------------------------------------------------------------
    async def infer(self, call: TensorCall, holder: Holder | None = None) -> Answer:
        """Resolve, decode, run and encode one tensor request. On the seed paths with a custom mapping,
        the caller's body is mapped first, and a prediction's answer after (explanations keep the
        standard form: the response template describes predictions). A large body is read, and a large
        answer written, in the reader process (``reading.Reader``): parsing megabytes holds a GIL for
        long and may take twenty times the body's size, and the IO loop must keep answering; on a
        mapped path (whose response template reads the caller's body) on the large-body thread."""
        servable = self.servable(call.model, call.version, call.label) if self.manager is None else (
            await self.use(call.model, call.version, call.label, holder))
        call.served_model = call.model or self.repository.default_name  # only served names become labels
        sigs, limit = self.signatures(servable), self.settings.max_instances
        if len(call.body) < OFFLOAD_BYTES:
            read = read_body(call, sigs, limit, self.mapping)
        elif call.protocol == "seed" and self.mapping is not None:  # the response template reads the body
            read = await self.off_loop(lambda: read_body(call, sigs, limit, self.mapping, large=True))
        else:
            read = await self.reader.run(reading.read_large, call, sigs, limit)
        call.answered = read.protocol
        sig, request = read.sig, read.request
        results: list[Tensors]
        if isinstance(request, v1.V1Request):
            if call.explain:
                target = read.body.get("target") if isinstance(read.body, dict) else None
                results = await self.explain(servable, sig, request.batches, target)
            else:
                results = await self.predict(servable, sig, request.batches)
        elif call.explain:
            results = await self.explain(servable, sig, [request.inputs], request.parameters.get("target"))
        else:
            results = await self.predict(servable, sig, [request.inputs])
        name, version = servable.name, servable.version
        if sum(a.nbytes for r in results for a in r.values()) < OFFLOAD_BYTES:
            return write_answer(call, name, version, read, results, self.mapping)
        if read.mapped_from is not None:
            return await self.off_loop(lambda: write_answer(call, name, version, read, results, self.mapping))
        stub = reading.Read(read.protocol, read.sig, {}, read.request.without_inputs())  # what encoding reads
        return await self.reader.run(write_answer, replace(call, body=b""), name, version, stub, results)

    async def off_loop(self, work: Callable[[], T]) -> T:
        """Run ``work`` (rendering a chat template over megabytes, say) on the large-body thread,
        the collector held off meanwhile (see ``pacing``)."""

        def paced() -> T:
            with pacing.collector_paused():
                return work()

        return await asyncio.get_running_loop().run_in_executor(self._large_reads, paced)

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()
        self.reader.close()
        self._large_reads.shutdown(wait=False)
