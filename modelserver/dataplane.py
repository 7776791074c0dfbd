"""The protocol-neutral data plane: resolve the model, version and signature, decode the body
with its protocol's codec, run it through the dispatcher, and encode the answer.

Every transport is a thin layer over this: the HTTP routes of V1, V2 and the seed paths hand a
``TensorCall`` to ``DataPlane.infer`` and send the ``Answer`` back; the OpenAI routes and the
metadata routes use ``servable``, ``signature`` and the dispatcher through it. No transport knows
another's codec, and nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from modelserver.codecs import bodies, fastparse, jsonio, pacing, v1, v2
from modelserver.codecs.mapping import Mapping
from modelserver.codecs.tensors import batch_rows
from modelserver.dispatch import Dispatcher
from modelserver.errors import InvalidInput
from modelserver.interface import Servable, Signature, Tensors, get_signature
from modelserver.runtime.repository import ModelRepository
from modelserver.settings import Settings

log = logging.getLogger("modelserver")
T = TypeVar("T")

#: ``seed``: the single-model paths (``/predict``), whose body says whether it is V1 or V2
CallProtocol = Literal["v1", "v2", "seed"]
JSON = "application/json"
#: bodies at least this long are read off the IO loop (the general path reads about 3-4 MB/s), and
#: answers whose outputs take at least this much are written off it
OFFLOAD_BYTES = 256 * 1024
#: the threads that read and write them (so at most this many at once): reading one may take about
#: twenty times its size while it lasts (a body refused on the general path becomes Python values),
#: such a thread keeps a parser as large as the largest body it read (about seven times it), and
#: the reads hold the GIL nearly all the time, so another thread would add memory, not speed
LARGE_READS = 1
#: after this long with no large body, the large-body thread lets its parser (and the memory it
#: kept, about seven times the largest body) go; the next large body pays to make it again (about
#: 100 ms at ten megabytes, with the GIL held: the IO loop waits as long)
PARSER_IDLE_SECONDS = 30.0


@dataclass(slots=True)
class TensorCall:
    """One tensor request (predict, infer or explain) as a transport hands it over."""

    protocol: CallProtocol
    explain: bool
    body: bytes
    model: str | None = None
    version: str | None = None
    label: str | None = None
    #: the signature named by the path (``/{signature}/predict``); else the body's, else the default
    signature: str | None = None
    #: the V2 binary extension's ``Inference-Header-Content-Length``
    header_length: str | None = None
    #: set as the call goes, for the transport's metrics: the model served (once it resolved) and
    #: the protocol the answer speaks
    served_model: str = ""
    answered: str = ""


@dataclass(slots=True)
class Answer:
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] | None = None


class DataPlane:
    """The served models and the one way every protocol reaches them."""

    def __init__(
        self, settings: Settings, repository: ModelRepository, dispatcher: Dispatcher, mapping: Mapping | None = None
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.dispatcher = dispatcher
        #: the custom mapping of the single-model paths (``/predict``, ``/explain``), if any
        self.mapping = mapping
        self._large_reads = ThreadPoolExecutor(LARGE_READS, thread_name_prefix="large-body")
        self._large_bodies = 0  # how many were read: the parser goes only if none came since

    # -- the shared steps -----------------------------------------------------------------------
    def servable(self, model: str | None, version: str | None = None, label: str | None = None) -> Servable:
        """The loaded servable a request names (the served model when it names none); 404 or 503."""
        return self.repository.resolve(model or self.repository.default_name, version, label)

    def signature(self, servable: Servable, name: str | None) -> Signature:
        """The named signature, else the configured default, else the model's only one."""
        if name:
            return get_signature(servable, name)
        default = self.settings.signature
        if default not in servable.signatures and len(servable.signatures) == 1:
            default = next(iter(servable.signatures))
        return get_signature(servable, default)

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
    async def infer(self, call: TensorCall) -> Answer:
        """Resolve, decode, run and encode one tensor request. On the seed paths with a custom mapping,
        the caller's body is mapped first, and a prediction's answer after (explanations keep the
        standard form: the response template describes predictions). A large body is read (parsed,
        mapped and decoded) on another thread: the general path takes seconds on megabytes, and the
        IO loop must keep answering meanwhile."""
        servable = self.servable(call.model, call.version, call.label)
        call.served_model = call.model or self.repository.default_name  # only served names become labels
        if len(call.body) >= OFFLOAD_BYTES:
            loop = asyncio.get_running_loop()
            self._large_bodies += 1
            loop.call_later(PARSER_IDLE_SECONDS, self._after_large_bodies, self._large_bodies)
            read = await self.off_loop(lambda: self.read(call, servable, large=True))
        else:
            read = self.read(call, servable)
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
        if sum(a.nbytes for r in results for a in r.values()) >= OFFLOAD_BYTES:
            return await asyncio.get_running_loop().run_in_executor(
                self._large_reads, self.answer, call, servable, read, results)
        return self.answer(call, servable, read, results)

    def answer(self, call: TensorCall, servable: Servable, read: Read, results: list[Tensors]) -> Answer:
        """The body of a tensor request's answer in its protocol (mapped on a mapped path), with no
        IO: a large one is written on a large-body thread, in pieces (``jsonio.dumps``)."""
        request = read.request
        out_tail = b""
        if isinstance(request, v1.V1Request):
            answer = v1.encode(request, results, "explanations" if call.explain else "predictions")
        else:
            answer, out_tail = v2.encode(request, results[0], servable.name, servable.version, explain=call.explain)
        if read.mapped_from is not None and self.mapping is not None and not call.explain:
            if out_tail:
                raise InvalidInput("binary outputs are not available on a mapped path: ask for JSON outputs")
            plain = jsonio.loads(jsonio.dumps(answer))  # arrays as JSON lists, as the expressions see them
            return Answer(jsonio.dumps(self.mapping.response(plain, read.mapped_from)))
        head_out = jsonio.dumps(answer)
        if not out_tail:
            return Answer(head_out)
        return Answer(head_out + out_tail, "application/octet-stream", {v2.HEADER_LENGTH: str(len(head_out))})

    async def off_loop(self, work: Callable[[], T]) -> T:
        """Run ``work`` (reading a large body, say) on the large-body thread, the collector held off
        (see ``pacing``); after a refusal the memory it took goes back to the system."""
        loop = asyncio.get_running_loop()

        def paced() -> T:
            with pacing.collector_paused():
                return work()

        try:
            return await loop.run_in_executor(self._large_reads, paced)
        except InvalidInput:
            await loop.run_in_executor(self._large_reads, release_memory)
            raise

    def _after_large_bodies(self, count: int) -> None:
        if count == self._large_bodies:  # none since: the parser's memory goes back
            self._large_reads.submit(_forget_parser)

    def read(self, call: TensorCall, servable: Servable, large: bool = False) -> Read:
        """A tensor request's body parsed, mapped (seed paths with a mapping), checked and decoded
        against the signature: everything before the model, with no IO (any thread may run it).
        A ``large`` body refused has its Python values freed a piece at a time (``pacing``)."""
        head, tail = (
            v2.split_binary(call.body, call.header_length) if call.protocol == "v2" else (call.body, b"")
        )
        body = fastparse.loads(head)
        mapped_from = None
        try:
            if call.protocol == "seed" and self.mapping is not None:
                mapped_from, body = body, self.mapping.request(body)
            protocol = bodies.protocol_of(body) if call.protocol == "seed" else call.protocol
            sig = self.signature(servable, call.signature or bodies.signature_name(body))
            if bodies.may_have_booleans(head):
                bodies.refuse_booleans(body, sig, protocol)
            limit = self.settings.max_instances
            request: v1.V1Request | v2.V2Request
            if protocol == "v1":
                request = v1.decode(body, sig, max_instances=limit, explain=call.explain)
            elif v2.is_single_tensor(body):
                request = v2.decode_single(body, sig, max_instances=limit)
            else:
                request = v2.decode(body, tail, sig, max_instances=limit)
        except InvalidInput:
            if large:
                pacing.dismantle(mapped_from)
                pacing.dismantle(body)
            raise
        return Read(protocol, sig, body, request, mapped_from)


def release_memory() -> None:
    """Give the pages a refused large body's Python values took back to the system.

    Those values are freed as soon as the error is raised (no reference cycle holds them:
    ``tests/unit/test_codec_v1.py`` checks it), but into the allocator's heap, which keeps them;
    glibc's ``malloc_trim`` returns its free pages. It takes a few milliseconds; a full collection
    of the garbage collector (tens of milliseconds with TensorFlow's objects alive, all of it holding
    the GIL) is not needed."""
    started = time.perf_counter()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    log.debug("memory released", extra={"seconds": round(time.perf_counter() - started, 4)})


def _forget_parser() -> None:
    fastparse.forget_parser()
    release_memory()


def _libc() -> Any:
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return lib if hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


@dataclass(slots=True)
class Read:
    """A tensor request ready for the model: its protocol, signature, body and decoded request."""

    protocol: Literal["v1", "v2"]
    sig: Signature
    body: Any
    request: v1.V1Request | v2.V2Request
    #: the caller's own body, when a custom mapping made ``body`` from it
    mapped_from: Any = None
