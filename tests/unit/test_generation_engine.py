"""The continuous-batching engine: slots, interleaving, stop strings, limits, cancellation, failures.

The model here is a small numpy stand-in with a real per-slot cache, whose next token depends on
everything in its slot, so a sequence that read another's slot would go wrong; generation with
real transformer weights is covered by tests/server/test_openai.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from modelserver.errors import Overloaded
from modelserver.interface import Event, SamplingParams
from modelserver.runtime.hf.engine import Engine
from modelserver.runtime.hf.sampling import choose, request_rng, top_logprobs
from modelserver.runtime.hf.text import Detokenizer, TextCodec

V = 20


class SumModel:
    """Next token = (sum of the slot's tokens) mod V, as one-hot logits."""

    def __init__(self, n_slots: int = 4, max_len: int = 64) -> None:
        self.n_slots, self.max_len = n_slots, max_len
        self.cache = np.full((n_slots, max_len), -1)
        self.calls: list[int] = []
        self.fail_on: int | None = None
        self.delay = 0.0

    def _logits(self, slot: int, pos: int) -> np.ndarray:
        out = np.zeros(V, dtype=np.float32)
        out[int(self.cache[slot, : pos + 1].sum()) % V] = 10.0
        return out

    def prefill(self, ids: np.ndarray, slot: int, *, all_logits: bool = False) -> np.ndarray:
        self.cache[slot] = -1
        self.cache[slot, : len(ids)] = ids
        if all_logits:
            return np.stack([self._logits(slot, t) for t in range(len(ids))])
        return self._logits(slot, len(ids) - 1)

    def decode(self, ids: np.ndarray, positions: np.ndarray, slots: np.ndarray) -> np.ndarray:
        if self.fail_on is not None and self.fail_on in ids:
            raise RuntimeError("model failure")
        self.calls.append(len(ids))
        time.sleep(self.delay)
        for t, p, s in zip(ids, positions, slots):
            assert self.cache[s, p] == -1 and self.cache[s, p - 1] != -1, "slot cache out of step"
            self.cache[s, p] = t
        return np.stack([self._logits(s, p) for p, s in zip(positions, slots)])


def expected(prompt: list[int], steps: int) -> list[int]:
    seq, out = list(prompt), []
    for _ in range(steps):
        t = sum(seq) % V
        out.append(t)
        seq.append(t)
    return out


@pytest.fixture(scope="module")
def text_codec(tmp_path_factory: pytest.TempPathFactory) -> TextCodec:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    d: Path = tmp_path_factory.mktemp("tok")
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(V)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.save(str(d / "tokenizer.json"))
    return TextCodec(d)


class Collector:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.done = threading.Event()
        self.finished = 0
        self.expect = 1

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if event.finish_reason is not None:
            self.finished += 1
            if self.finished == self.expect:
                self.done.set()

    def tokens(self, index: int = 0) -> list[int]:
        return [e.token for e in self.events if e.index == index and e.token is not None]

    def text(self, index: int = 0) -> str:
        return "".join(e.text for e in self.events if e.index == index)


def run(engine: Engine, prompt: list[int], params: SamplingParams, n: int = 1, seed: int | None = 0) -> Collector:
    c = Collector()
    c.expect = n
    engine.submit(prompt, params, n=n, seed=seed, emit=c)
    assert c.done.wait(10)
    return c


def test_concurrent_sequences_share_decode_steps(text_codec: TextCodec) -> None:
    model = SumModel(n_slots=4)
    engine = Engine(model, text_codec, frozenset(), max_waiting=16)
    prompts = [[1], [2, 3], [4, 5, 6], [7]]
    collectors = []
    for p in prompts:
        c = Collector()
        engine.submit(p, SamplingParams(max_tokens=12, temperature=0.0), n=1, seed=None, emit=c)
        collectors.append(c)
    for p, c in zip(prompts, collectors):
        assert c.done.wait(10)
        assert c.tokens() == expected(p, 12)
        assert c.events[-1].finish_reason == "length"
    assert max(model.calls) > 1, "sequences never decoded together"
    engine.close()


def test_more_requests_than_slots_wait_their_turn(text_codec: TextCodec) -> None:
    engine = Engine(SumModel(n_slots=2), text_codec, frozenset(), max_waiting=16)
    collectors = []
    for i in range(6):
        c = Collector()
        engine.submit([i + 1], SamplingParams(max_tokens=5, temperature=0.0), n=1, seed=None, emit=c)
        collectors.append(c)
    for i, c in enumerate(collectors):
        assert c.done.wait(10) and c.tokens() == expected([i + 1], 5)
    engine.close()


def test_queue_bound(text_codec: TextCodec) -> None:
    engine = Engine(SumModel(n_slots=1), text_codec, frozenset(), max_waiting=1)
    gate = threading.Event()
    engine._cond.acquire()  # hold the engine thread so nothing is admitted
    try:
        engine._waiting.append(type("R", (), {"cancelled": False, "n": 1})())  # type: ignore[arg-type]
        with pytest.raises(Overloaded):
            engine.submit([1], SamplingParams(max_tokens=1), n=1, seed=None, emit=lambda e: None)
        engine._waiting.clear()
    finally:
        engine._cond.release()
        gate.set()
    engine.close()


def test_eos_stop_strings_and_text(text_codec: TextCodec) -> None:
    engine = Engine(SumModel(), text_codec, frozenset({expected([3], 4)[3]}), max_waiting=4)
    c = run(engine, [3], SamplingParams(max_tokens=10, temperature=0.0))
    assert c.tokens() == expected([3], 4) and c.events[-1].finish_reason == "stop"
    assert c.text() == " ".join(f"w{t}" for t in expected([3], 3))
    # a stop string: the text ends before it, and nothing after it was let out
    toks = expected([1], 10)
    stop = f"w{toks[4]}"
    c = run(Engine(SumModel(), text_codec, frozenset(), max_waiting=4), [1],
            SamplingParams(max_tokens=10, temperature=0.0, stop=(stop,)))
    full = " ".join(f"w{t}" for t in toks)
    assert c.text() == full[: full.index(stop)] and c.events[-1].finish_reason == "stop"
    engine.close()


def test_n_choices_and_seeds(text_codec: TextCodec) -> None:
    engine = Engine(SumModel(), text_codec, frozenset(), max_waiting=4)
    params = SamplingParams(max_tokens=6, temperature=1.0)
    a = run(engine, [1], params, n=3, seed=42)
    b = run(engine, [1], params, n=3, seed=42)
    assert [a.tokens(i) for i in range(3)] == [b.tokens(i) for i in range(3)]
    engine.close()


def test_cancel_frees_the_slot(text_codec: TextCodec) -> None:
    model = SumModel(n_slots=1)
    model.delay = 0.01
    engine = Engine(model, text_codec, frozenset(), max_waiting=4)
    seen = threading.Event()
    events: list[Event] = []

    def emit(e: Event) -> None:
        events.append(e)
        if len(events) == 3:
            seen.set()

    req = engine.submit([1], SamplingParams(max_tokens=60, temperature=0.0), n=1, seed=None, emit=emit)
    assert seen.wait(10)
    engine.cancel(req)
    c = run(engine, [2], SamplingParams(max_tokens=3, temperature=0.0))  # gets the only slot
    assert c.tokens() == expected([2], 3)
    assert len(events) < 60 and not any(e.finish_reason for e in events)
    engine.close()


def test_model_failure_fails_its_requests_only(text_codec: TextCodec) -> None:
    model = SumModel(n_slots=2)
    engine = Engine(model, text_codec, frozenset(), max_waiting=4)
    model.fail_on = 19
    c = run(engine, [18], SamplingParams(max_tokens=5, temperature=0.0))  # first decode sees token 18+... fails
    assert c.events[-1].error is not None or c.events[-1].finish_reason == "length"
    model.fail_on = None
    ok = run(engine, [2], SamplingParams(max_tokens=4, temperature=0.0))
    assert ok.tokens() == expected([2], 4)
    engine.close()


def test_prompt_logprobs(text_codec: TextCodec) -> None:
    engine = Engine(SumModel(), text_codec, frozenset(), max_waiting=4)
    c = run(engine, [1, 2, 3], SamplingParams(max_tokens=2, temperature=0.0, logprobs=2, prompt_logprobs=True))
    first = c.events[0]
    assert first.prompt_logprobs is not None and len(first.prompt_logprobs) == 3 and first.prompt_logprobs[0][0] is None
    assert first.logprob is not None and first.logprob > -0.01 and first.top and first.top[0][0] == first.token
    engine.close()


def test_sampling_functions() -> None:
    logits = np.array([0.0, 1.0, 3.0, 2.0])
    assert choose(logits, 0.0, 1.0, np.random.default_rng(0)) == 2
    draws = {choose(logits, 1.0, 0.5, np.random.default_rng(i)) for i in range(50)}
    assert draws == {2}, "top_p 0.5 keeps only the most likely token here"
    a = [choose(logits, 1.0, 1.0, request_rng(5, 0)) for _ in range(1)]
    assert a == [choose(logits, 1.0, 1.0, request_rng(5, 0))]
    assert [t for t, _ in top_logprobs(np.log(np.array([0.1, 0.2, 0.7])), 2)] == [2, 1]


def test_detokenizer_is_incremental(text_codec: TextCodec) -> None:
    d = Detokenizer(text_codec)
    parts = [d.push(t) for t in (1, 2, 3)]
    assert "".join(parts) == text_codec.decode([1, 2, 3]) == d.text


def test_a_failure_while_sampling_one_row_fails_that_row_only(text_codec: TextCodec) -> None:
    class Fussy(TextCodec):
        def __init__(self, inner: TextCodec) -> None:
            self.__dict__.update(inner.__dict__)

        def decode(self, ids: list[int]) -> str:
            if 7 in ids:
                raise RuntimeError("cannot decode 7")
            return super().decode(ids)

    engine = Engine(SumModel(n_slots=2), Fussy(text_codec), frozenset(), max_waiting=4)
    bad, good = Collector(), Collector()
    engine.submit([3, 4], SamplingParams(max_tokens=5, temperature=0.0), n=1, seed=None, emit=bad)  # 7 comes first
    engine.submit([1], SamplingParams(max_tokens=5, temperature=0.0), n=1, seed=None, emit=good)
    assert bad.done.wait(10) and good.done.wait(10)
    assert bad.events[-1].error is not None
    assert good.tokens() == expected([1], 5) and 7 not in expected([1], 5)
    assert run(engine, [2], SamplingParams(max_tokens=2, temperature=0.0)).tokens() == expected([2], 2)
    engine.close()
