"""The dispatcher's batching: merge and split, isolation of failures, admission and timeouts.

The servable here is a plain numpy function (a unit test of the queueing logic); batching with real
TensorFlow models is covered by tests/server/test_batching.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from modelserver.dispatch import Dispatcher, batchable, merge, split
from modelserver.errors import InvalidInput, Overloaded, RequestTimeout
from modelserver.interface import Signature, TensorSpec
from modelserver.metrics import Metrics
from modelserver.settings import Settings

SIG = Signature("s", (TensorSpec("x", "FP32", (-1, 1)),), (TensorSpec("y", "FP32", (-1, 1)),))


class Doubler:
    """Doubles its input after ``delay`` seconds; rejects negative values; records call sizes and threads."""

    name, version, platform, examples = "d", 1, "test", {}
    signatures = {"s": SIG}

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.calls: list[int] = []
        self.threads: list[int] = []
        self.lock = threading.Lock()

    def predict(self, signature, inputs):
        x = inputs["x"]
        with self.lock:
            self.calls.append(len(x))
            self.threads.append(threading.get_ident())
        time.sleep(self.delay)
        if (x < 0).any():
            raise InvalidInput("negative")
        return {"y": x * 2}

    def explain(self, signature, inputs, *, target, steps):
        raise NotImplementedError


def run(coro):
    return asyncio.run(coro)


def test_merge_and_split_are_exact():
    parts = [{"x": np.arange(n, dtype=np.float32).reshape(n, 1) + 10 * n} for n in (1, 3, 2)]
    merged = merge(parts)
    assert merged["x"].shape == (6, 1)
    back = split(merged, [1, 3, 2])
    for a, b in zip(parts, back):
        np.testing.assert_array_equal(a["x"], b["x"])
    with pytest.raises(ValueError):
        split({"y": np.zeros(5)}, [1, 3, 2])


def test_batchable():
    assert batchable(SIG)
    assert not batchable(Signature("s", (TensorSpec("x", "FP32", (1, 2)),), SIG.outputs))
    assert not batchable(Signature("s", SIG.inputs, (TensorSpec("y", "FP32", ()),)))


def _gather(d: Dispatcher, model, sizes, bad=()):
    async def one(i, n):
        x = np.full((n, 1), -1.0 if i in bad else float(i), np.float32)
        try:
            return await d.predict(model, "s", {"x": x}, n)
        except Exception as e:  # noqa: BLE001 - collected for the assertions
            return e

    async def main():
        return await asyncio.gather(*(one(i, n) for i, n in enumerate(sizes)))

    return run(main())


def test_concurrent_requests_are_merged_and_split_back():
    model = Doubler()
    d = Dispatcher(Settings(max_batch_size=32), Metrics())
    sizes = [1, 3, 2, 5, 1]
    out = _gather(d, model, sizes)
    for i, (n, o) in enumerate(zip(sizes, out)):
        np.testing.assert_array_equal(o["y"], np.full((n, 1), 2.0 * i))
    assert sum(model.calls) == sum(sizes) and len(model.calls) < len(sizes)


def test_a_failing_request_fails_alone():
    model = Doubler()
    d = Dispatcher(Settings(), Metrics())
    out = _gather(d, model, [1, 2, 3, 4], bad={2})
    assert isinstance(out[2], InvalidInput)
    for i in (0, 1, 3):
        np.testing.assert_array_equal(out[i]["y"], np.full(([1, 2, 3, 4][i], 1), 2.0 * i))


def test_row_cap_and_no_batching():
    model = Doubler()
    _gather(Dispatcher(Settings(max_batch_size=4), Metrics()), model, [1, 3, 3, 2, 2])
    assert max(model.calls) <= 4
    model2 = Doubler()
    _gather(Dispatcher(Settings(batching=False), Metrics()), model2, [1, 3, 3])
    assert sorted(model2.calls) == [1, 3, 3]


def test_overload_and_timeout():
    d = Dispatcher(Settings(max_concurrent_requests=2), Metrics())
    out = _gather(d, Doubler(delay=0.2), [1, 1, 1, 1])
    assert sum(isinstance(o, Overloaded) for o in out) == 2
    d = Dispatcher(Settings(timeout_seconds=0.05), Metrics())
    out = _gather(d, Doubler(delay=0.3), [1])
    assert isinstance(out[0], RequestTimeout)


def test_an_idle_model_runs_a_request_at_once_and_a_busy_one_merges_the_queue():
    model = Doubler(delay=0.1)
    d = Dispatcher(Settings(max_batch_size=32), Metrics())

    async def main():
        first = asyncio.ensure_future(d.predict(model, "s", {"x": np.ones((1, 1), np.float32)}, 1))
        await asyncio.sleep(0.02)  # the first call is running now; these queue behind it
        rest = [d.predict(model, "s", {"x": np.full((n, 1), n, np.float32)}, n) for n in (2, 3, 4)]
        return await asyncio.gather(first, *rest)

    started = time.perf_counter()
    out = run(main())
    assert model.calls == [1, 9]  # alone at once, then everything that queued as one call
    assert time.perf_counter() - started < 0.35
    for n, o in zip((1, 2, 3, 4), out):
        np.testing.assert_array_equal(o["y"], np.full((n, 1), 2.0 * (n if n > 1 else 1)))


def test_a_request_that_times_out_in_the_queue_is_never_run():
    model = Doubler(delay=0.2)
    d = Dispatcher(Settings(timeout_seconds=0.1), Metrics())

    async def main():
        first = asyncio.ensure_future(d.predict(model, "s", {"x": np.ones((1, 1), np.float32)}, 1))
        await asyncio.sleep(0.01)
        queued = d.predict(model, "s", {"x": np.ones((5, 1), np.float32)}, 5)
        results = await asyncio.gather(first, queued, return_exceptions=True)
        await asyncio.sleep(0.25)  # the first call returns; the timed-out request must not run
        return results

    out = run(main())
    assert all(isinstance(o, RequestTimeout) for o in out)
    assert model.calls == [1]
    assert d.active == 0


def test_max_latency_waits_to_gather_a_batch():
    model = Doubler(delay=0.01)
    d = Dispatcher(Settings(max_latency_ms=50), Metrics())
    out = _gather(d, model, [1, 2, 3])
    assert model.calls == [6]
    for i, (n, o) in enumerate(zip([1, 2, 3], out)):
        np.testing.assert_array_equal(o["y"], np.full((n, 1), 2.0 * i))


def _one_by_one(d: Dispatcher, model, values):
    """Requests one after another, each alone in the server; the loop's thread id and the results."""

    async def main():
        results = []
        for v in values:
            try:
                results.append(await d.predict(model, "s", {"x": np.full((1, 1), v, np.float32)}, 1))
            except InvalidInput as e:
                results.append(e)
        return threading.get_ident(), results

    return run(main())


@pytest.mark.parametrize("batching", [True, False])
def test_a_short_call_with_nothing_else_in_progress_runs_on_the_loop(batching):
    model = Doubler(delay=0)
    # a generous limit: "short" must hold on a loaded machine too (a busy CI host slows the first call)
    d = Dispatcher(Settings(batching=batching, inline_call_ms=50), Metrics())
    loop_thread, out = _one_by_one(d, model, [1.0, 2.0, -1.0, 3.0])
    # the first call is timed on a thread; once known to be short, calls run on the loop
    assert model.threads[0] != loop_thread and set(model.threads[1:]) == {loop_thread}
    np.testing.assert_array_equal(out[1]["y"], [[4.0]])
    assert isinstance(out[2], InvalidInput)  # an inline failure is the request's own error
    np.testing.assert_array_equal(out[3]["y"], [[6.0]])
    assert d.active == 0


def test_slow_calls_and_a_zero_limit_always_use_a_thread():
    for model, settings in ((Doubler(delay=0.005), Settings()), (Doubler(delay=0), Settings(inline_call_ms=0))):
        loop_thread, _ = _one_by_one(Dispatcher(settings, Metrics()), model, [1.0] * 4)
        assert loop_thread not in model.threads


def test_a_call_with_more_rows_than_usual_is_expected_to_take_longer():
    from modelserver.dispatch import CallCost

    cost = CallCost()
    assert cost.estimate(1) is None
    cost.add(0.0002, 1)
    assert cost.estimate(1) == pytest.approx(0.0002)
    assert cost.estimate(1000) == pytest.approx(0.2)
