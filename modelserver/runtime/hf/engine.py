"""Continuous batching for causal language models: one thread runs every active sequence together.

The model keeps a key/value cache with ``n_slots`` slots. A request waits in a bounded queue
until its ``n`` choices each have a slot; its prompt is then run (prefill) into those slots and
its sequences join the decode batch. Each decode step runs one token of every active sequence
as one model call, so concurrent requests share the model instead of queueing behind each other,
and a sequence that finishes frees its slot for a waiting request at the next step.

Results go out as ``Event`` objects through each request's ``emit`` callback (called on the
engine thread; the server hands them to its IO loop). A cancelled request (a client that went
away) leaves the batch at the next step.

A request with a grammar (``SamplingParams.grammar``: structured output, tool calls) gives each of
its sequences an llguidance matcher: before every choice of a token the matcher's mask takes the
tokens the grammar forbids out of that row's logits, so constrained and free sequences share a
batch, and a sequence whose grammar is complete stops as if it had written end-of-sequence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import llguidance
import llguidance.numpy as lnp
import numpy as np

from modelserver.errors import NotReady, Overloaded
from modelserver.interface import Emit, Event, SamplingParams
from modelserver.runtime.hf.sampling import choose, log_softmax, request_rng, top_logprobs
from modelserver.runtime.hf.text import Detokenizer, TextCodec

log = logging.getLogger("modelserver.generate")


class DecoderModel(Protocol):
    n_slots: int
    max_len: int

    def prefill(self, ids: np.ndarray, slot: int, *, all_logits: bool = False) -> np.ndarray: ...

    def decode(self, ids: np.ndarray, positions: np.ndarray, slots: np.ndarray) -> np.ndarray: ...


@dataclass
class Request:
    prompt: list[int]
    params: SamplingParams
    n: int
    seed: int | None
    emit: Emit
    cancelled: bool = False
    submitted: float = field(default_factory=time.monotonic)


class Sequence:
    """One choice of a request: its slot, its tokens and the text it has let out so far."""

    def __init__(self, request: Request, index: int, slot: int, codec: TextCodec, eos: frozenset[int],
                 matcher: Any = None) -> None:
        self.request = request
        #: the llguidance matcher of the request's grammar (None: unconstrained)
        self.matcher = matcher
        self.index = index
        self.slot = slot
        self.rng = request_rng(request.seed, index)
        self.detok = Detokenizer(codec)
        self.eos = eos
        self.count = 0  # tokens generated, eos included
        self.last = -1
        self.emitted = 0  # characters of detok.text let out
        self.hold = max((len(s) for s in request.params.stop), default=1) - 1
        self.done = False
        self.released = False

    @property
    def position(self) -> int:
        """Where the last token goes in the cache (it has no key/value there yet)."""
        return len(self.request.prompt) + self.count - 1

    def accept(self, token: int, logp: np.ndarray | None, *, complete: bool = False) -> Event:
        """The sequence's next token; ``complete``: its grammar allows nothing after it (it stops)."""
        params = self.request.params
        self.count += 1
        self.last = token
        finish: str | None = None
        text = self.detok.text
        if token in self.eos:
            finish = "stop"
            self.detok.flush()
            text = self.detok.text
        else:
            self.detok.push(token)
            text = self.detok.text
            if params.stop:
                start = max(0, self.emitted - self.hold)
                hits = [i for i in (text.find(s, start) for s in params.stop) if i >= 0]
                if hits:
                    text, finish = text[: min(hits)], "stop"
            if finish is None and complete:
                finish = "stop"
                self.detok.flush()
                text = self.detok.text
            if finish is None and self.count >= params.max_tokens:
                finish = "length"
                self.detok.flush()
                text = self.detok.text
        safe = len(text) if finish else max(self.emitted, len(text) - self.hold)
        delta = text[self.emitted : safe]
        self.emitted = max(self.emitted, safe)
        self.done = finish is not None
        event = Event(self.index, token, delta, finish_reason=finish)
        if logp is not None and params.logprobs is not None:
            event.logprob = float(logp[token])
            event.top = top_logprobs(logp, params.logprobs)
        return event


class Engine:
    """The decode loop of one model, on its own thread."""

    def __init__(self, model: DecoderModel, codec: TextCodec, eos: frozenset[int], *, max_waiting: int) -> None:
        self.model = model
        self.codec = codec
        self.eos = eos
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._waiting: deque[Request] = deque()
        self._active: list[Sequence] = []
        self._free = list(range(model.n_slots))[::-1]
        self._closed = False
        self.steps = 0
        #: the model's tokenizer for llguidance (set by the model before a request with a grammar)
        self.grammar_tokenizer: Any = None
        #: called once per constrained sequence, and with the seconds each step spent on masks (metrics)
        self.on_constrained: Callable[[], None] | None = None
        self.on_mask: Callable[[float], None] | None = None
        #: called with the rows of each decode step, and once per cancelled sequence (metrics)
        self.on_step: Callable[[int], None] | None = None
        self.on_cancel: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._loop, name="generate", daemon=True)
        self._thread.start()

    # -- called from any thread ---------------------------------------------------------------
    def submit(self, prompt: list[int], params: SamplingParams, *, n: int, seed: int | None, emit: Emit) -> Request:
        """Queue a request; ``Overloaded`` when ``max_waiting`` requests already wait."""
        if n > self.model.n_slots:
            raise ValueError(f"n={n} is more than the {self.model.n_slots} sequences the model runs at once")
        request = Request(prompt, params, n, seed, emit)
        with self._cond:
            if self._closed:
                raise Overloaded("the server is shutting down")
            if len(self._waiting) >= self.max_waiting:
                raise Overloaded(
                    f"{len(self._waiting)} generation requests are already waiting (limit "
                    f"{self.max_waiting}); retry shortly"
                )
            self._waiting.append(request)
            self._cond.notify()
        return request

    def cancel(self, request: Request) -> None:
        """Stop a request's generation at the next step (its slots are freed)."""
        request.cancelled = True

    @property
    def load(self) -> tuple[int, int]:
        """(sequences running, requests waiting)"""
        return len(self._active), len(self._waiting)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    # -- the engine thread --------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._active and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._shut()
                    return
                admitted = self._admit()
            try:
                for seqs in admitted:
                    self._prefill(seqs)
                self._drop_cancelled()
                if self._active:
                    self._step()
            except Exception as e:  # a bug: fail what is running rather than leave it waiting forever
                self._fail(list(self._active), e)

    def _shut(self) -> None:
        """Every waiting and running request gets an error event: nothing waits forever."""
        error = NotReady("the server is shutting down")
        for request in self._waiting:
            for i in range(request.n):
                _send(request, Event(i, None, finish_reason="error", error=error))
        self._waiting.clear()
        for seq in self._active:
            _send(seq.request, Event(seq.index, None, finish_reason="error", error=error))
        self._active = []

    def _admit(self) -> list[list[Sequence]]:
        """Requests at the head of the queue whose choices all fit in free slots (in order)."""
        out: list[list[Sequence]] = []
        while self._waiting:
            request = self._waiting[0]
            if request.cancelled:
                self._waiting.popleft()
                continue
            if request.n > len(self._free):
                break
            self._waiting.popleft()
            grammar = request.params.grammar
            out.append([
                Sequence(request, i, self._free.pop(), self.codec, self.eos,
                         None if grammar is None else self._matcher(grammar))
                for i in range(request.n)
            ])
        return out

    def _matcher(self, grammar: str) -> Any:
        if self.on_constrained is not None:
            self.on_constrained()
        return llguidance.LLMatcher(self.grammar_tokenizer, grammar)

    def _constrain(self, rows: list[Sequence], logits: np.ndarray) -> np.ndarray:
        """``logits`` [rows, vocab] with each constrained row's forbidden tokens at -inf (a copy)."""
        constrained = [i for i, s in enumerate(rows) if s.matcher is not None]
        if not constrained:
            return logits
        started = time.perf_counter()
        logits = np.array(logits, dtype=np.float32)
        mask = lnp.allocate_token_bitmask(len(rows), logits.shape[-1])  # every token allowed
        for i in constrained:
            lnp.fill_next_token_bitmask(rows[i].matcher, mask, i)
        lnp.apply_token_bitmask_inplace(logits, mask)
        if self.on_mask is not None:
            self.on_mask(time.perf_counter() - started)
        return logits

    def _choose(self, seq: Sequence, logits: np.ndarray) -> Event:
        """Sample the sequence's next token from its (masked) logits and let its matcher follow."""
        params = seq.request.params
        lp = log_softmax(logits) if params.logprobs is not None else None
        token = choose(logits, params.temperature, params.top_p, seq.rng)
        complete = False
        if seq.matcher is not None and token not in self.eos:
            if not seq.matcher.consume_token(token):
                raise RuntimeError(f"the grammar refused a token its own mask allowed: {seq.matcher.get_error()}")
            complete = seq.matcher.is_stopped()
        return seq.accept(token, lp, complete=complete)

    def _release(self, seq: Sequence) -> None:
        """The sequence is over (finished, cancelled or failed): its slot is free (once)."""
        seq.done = True
        if not seq.released:
            seq.released = True
            self._free.append(seq.slot)

    def _drop_cancelled(self) -> None:
        keep = []
        for seq in self._active:
            if seq.request.cancelled or seq.done:
                if not seq.done and self.on_cancel is not None:
                    self.on_cancel()
                self._release(seq)
            else:
                keep.append(seq)
        self._active = keep

    def _fail(self, seqs: list[Sequence], error: Exception) -> None:
        log.error("generation failed", exc_info=error)
        for seq in seqs:
            if not seq.done:
                _send(seq.request, Event(seq.index, None, finish_reason="error", error=error))
            self._release(seq)
        self._active = [s for s in self._active if not s.done]

    def _prefill(self, seqs: list[Sequence]) -> None:
        request = seqs[0].request
        params = request.params
        prompt = np.asarray(request.prompt, dtype=np.int32)
        try:
            for seq in seqs:
                logits = self.model.prefill(prompt, seq.slot, all_logits=params.prompt_logprobs)
                prompt_lp: list[tuple[float | None, list[tuple[int, float]]]] | None = None
                if params.prompt_logprobs:
                    lp_all = log_softmax(logits)
                    k = params.logprobs or 0
                    prompt_lp = [(None, [])]
                    prompt_lp += [
                        (float(lp_all[t - 1][request.prompt[t]]), top_logprobs(lp_all[t - 1], k))
                        for t in range(1, len(request.prompt))
                    ]
                    logits = logits[-1]
                event = self._choose(seq, self._constrain([seq], logits[None, :])[0])
                event.prompt_logprobs = prompt_lp
                if seq.done:
                    self._release(seq)
                else:
                    self._active.append(seq)
                if not _send(request, event):
                    request.cancelled = True
        except Exception as e:  # a model failure fails this request only
            self._fail(seqs, e)

    def _step(self) -> None:
        rows = self._active
        ids = np.fromiter((s.last for s in rows), dtype=np.int32, count=len(rows))
        positions = np.fromiter((s.position for s in rows), dtype=np.int32, count=len(rows))
        slots = np.fromiter((s.slot for s in rows), dtype=np.int32, count=len(rows))
        try:
            logits = self.model.decode(ids, positions, slots)
        except Exception as e:
            self._fail(rows, e)
            return
        self.steps += 1
        if self.on_step is not None:
            self.on_step(len(rows))
        try:
            logits = self._constrain(rows, logits)
        except Exception as e:
            self._fail(rows, e)
            return
        for i, seq in enumerate(rows):
            try:
                event = self._choose(seq, logits[i])
            except Exception as e:  # a bug in one row's sampling or text fails that row, not the engine
                self._fail([seq], e)
                continue
            if not _send(seq.request, event):
                seq.request.cancelled = True
        self._drop_cancelled()


def _send(request: Request, event: Event) -> bool:
    """Hand an event to the request's consumer; False when it is gone."""
    if request.cancelled:
        return False
    try:
        request.emit(event)
    except Exception:  # the consumer's loop closed: treat as cancelled
        return False
    return True
