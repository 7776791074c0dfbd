"""Reading a tensor request's body and writing its answer, and the process that does it for large ones.

``read_body`` (parse, map, pick the signature, decode) and ``write_answer`` (encode, map, serialize)
are the data plane's steps before and after the model: pure, no IO, any thread or process may run
them. A body or answer of ``OFFLOAD_BYTES`` or more is read or written by ``Reader``, a child
process, so that neither the GIL its parse holds (simdjson reads ten megabytes in one call of
35-130 ms, and the general path makes millions of Python objects) nor the memory it takes (up to
about twenty times the body on the general path) is the server's: the IO loop answers its health
probes all along, and a refused body's memory goes back with the child's. What crosses is the body's
bytes one way and arrays (or the error) the other.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from modelserver.codecs import bodies, fastparse, jsonio, pacing, v1, v2
from modelserver.codecs.mapping import Mapping
from modelserver.errors import InvalidInput, NotFound, NotReady
from modelserver.interface import ChatRenderer, Signature, Tensors

log = logging.getLogger("modelserver")
T = TypeVar("T")

#: ``seed``: the single-model paths (``/predict``), whose body says whether it is V1 or V2
CallProtocol = Literal["v1", "v2", "seed"]
JSON = "application/json"
#: bodies at least this long are read in the reader process (the general path reads about 3-4 MB/s),
#: and answers whose outputs take at least this much are written there
OFFLOAD_BYTES = 256 * 1024


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


@dataclass(slots=True)
class Read:
    """A request's body read: its protocol, signature, body and the decoded request."""

    protocol: str
    sig: Signature
    body: Any
    request: v1.V1Request | v2.V2Request
    #: on a mapped path, the caller's body before mapping (the response template may read it)
    mapped_from: Any = None


@dataclass(frozen=True)
class Signatures:
    """What choosing a signature needs of a servable: its name, version, signatures, and the default."""

    model: str
    version: int
    signatures: dict[str, Signature]
    default: str

    def choose(self, name: str | None) -> Signature:
        """The named signature, else the configured default, else the model's only one."""
        if not name:
            name = self.default
            if name not in self.signatures and len(self.signatures) == 1:
                name = next(iter(self.signatures))
        try:
            return self.signatures[name]
        except KeyError:
            raise NotFound(
                f"model {self.model!r} version {self.version} has no signature {name!r}; "
                f"it has {', '.join(repr(s) for s in sorted(self.signatures)) or 'none'}"
            ) from None


def read_body(call: TensorCall, sigs: Signatures, max_instances: int, mapping: Mapping | None = None,
              *, large: bool = False) -> Read:
    """A tensor request's body parsed, mapped (seed paths with a mapping), checked and decoded
    against the signature: everything before the model. A ``large`` body refused has its Python
    values freed a piece at a time (``pacing``)."""
    head, tail = v2.split_binary(call.body, call.header_length) if call.protocol == "v2" else (call.body, b"")
    body = fastparse.loads(head)
    mapped_from = None
    try:
        if call.protocol == "seed" and mapping is not None:
            mapped_from, body = body, mapping.request(body)
        protocol = bodies.protocol_of(body) if call.protocol == "seed" else call.protocol
        sig = sigs.choose(call.signature or bodies.signature_name(body))
        if bodies.may_have_booleans(head):
            bodies.refuse_booleans(body, sig, protocol)
        request: v1.V1Request | v2.V2Request
        if protocol == "v1":
            request = v1.decode(body, sig, max_instances=max_instances, explain=call.explain)
        elif v2.is_single_tensor(body):
            request = v2.decode_single(body, sig, max_instances=max_instances)
        else:
            request = v2.decode(body, tail, sig, max_instances=max_instances)
    except InvalidInput:
        if large:
            pacing.dismantle(mapped_from)
            pacing.dismantle(body)
        raise
    return Read(protocol, sig, body, request, mapped_from)


def write_answer(call: TensorCall, model: str, version: int, read: Read, results: list[Tensors],
                 mapping: Mapping | None = None) -> Answer:
    """The body of a tensor request's answer in its protocol (mapped on a mapped path); large
    arrays are written in pieces (``jsonio.dumps``)."""
    request = read.request
    out_tail = b""
    if isinstance(request, v1.V1Request):
        answer = v1.encode(request, results, "explanations" if call.explain else "predictions")
    else:
        answer, out_tail = v2.encode(request, results[0], model, version, explain=call.explain)
    if read.mapped_from is not None and mapping is not None and not call.explain:
        if out_tail:
            raise InvalidInput("binary outputs are not available on a mapped path: ask for JSON outputs")
        plain = jsonio.loads(jsonio.dumps(answer))  # arrays as JSON lists, as the expressions see them
        return Answer(jsonio.dumps(mapping.response(plain, read.mapped_from)))
    head_out = jsonio.dumps(answer)
    if not out_tail:
        return Answer(head_out)
    return Answer(head_out + out_tail, "application/octet-stream", {v2.HEADER_LENGTH: str(len(head_out))})


# -- in the reader process ------------------------------------------------------------------------
def read_large(call: TensorCall, sigs: Signatures, max_instances: int) -> Read:
    """``read_body`` of a large unmapped body, in the reader: the collector paused meanwhile; what
    comes back is the decoded request, and of the body only its ``target`` (what explain reads)."""
    with pacing.collector_paused():
        try:
            read = read_body(call, sigs, max_instances, large=True)
        except InvalidInput:
            release_memory()
            raise
    target = read.body.get("target") if isinstance(read.body, dict) else None
    read.body = {"target": target} if target is not None else {}
    return read


def parse_large(parse: Callable[[Any], T], body: bytes) -> T:
    """A large JSON body read a piece at a time and checked by ``parse`` (a codec's), in the reader."""
    with pacing.collector_paused():
        value = jsonio.loads_large(body)
        try:
            return parse(value)
        except InvalidInput:
            pacing.dismantle(value)
            release_memory()
            raise


def chat_large(parse: Callable[[Any], Any], chat: ChatRenderer, body: bytes) -> tuple[Any, str]:
    """A large chat body read and checked by ``parse``, and its prompt rendered by the model's
    ``chat`` template, in the reader: what comes back is the request without its messages (they
    may be hundreds of thousands) and the prompt, one string."""
    with pacing.collector_paused():
        value = jsonio.loads_large(body)
        try:
            request = parse(value)
            tools = request.gen.tools
            prompt = chat.render(request.messages, True, tools.for_template() if tools is not None else None)
        except InvalidInput:
            pacing.dismantle(value)
            release_memory()
            raise
    return replace(request, messages=[]), prompt


def tidy() -> None:
    """After a while without large bodies: the parser's memory (about seven times the largest body
    it read) and the heap's free pages go back to the system."""
    fastparse.forget_parser()
    release_memory()


def _libc() -> Any:
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return lib if hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


def release_memory() -> None:
    """Free heap pages back to the system (glibc's ``malloc_trim``): a refused body's Python values
    are freed by their counts (no cycle holds them: ``tests/unit/test_codec_v1.py`` checks it), but
    into the allocator's heap, which keeps them."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


# -- in the server ----------------------------------------------------------------------------------
#: after this long with no large body, the reader lets its parser's memory go (the next large body
#: pays about 100 ms to make it again, in the reader, not in the server)
IDLE_SECONDS = 30.0


class Reader:
    """The reader process: one large body or answer at a time, started on first use (or by
    ``start``), started again if it dies (a body that made it run out of memory gets a 503)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._uses = 0

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # a fresh interpreter forked from a server of its own (not from this process, whose
                # threads may hold locks), with the codecs already imported
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["modelserver.reading"])
                self._pool = ProcessPoolExecutor(1, mp_context=context)
            return self._pool

    def start(self) -> None:
        """Start the process now (it takes about a second), not with the first large body."""
        try:
            self._executor().submit(release_memory)
        except Exception as e:  # it is tried again with the first large body, which gets the error
            log.warning("the process for large bodies did not start", extra={"error": f"{type(e).__name__}: {e}"})

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        self._uses += 1
        loop.call_later(IDLE_SECONDS, self._idle, self._uses)
        try:
            return await loop.run_in_executor(self._executor(), fn, *args)
        except BrokenProcessPool:
            with self._lock:
                self._pool = None
            log.error("the process reading large bodies stopped (out of memory?); starting another")
            raise NotReady("the process reading large bodies stopped while reading this one; "
                           "try again, or send a smaller body") from None

    def _idle(self, uses: int) -> None:
        if uses == self._uses and self._pool is not None:
            self._pool.submit(tidy)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
