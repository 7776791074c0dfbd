"""The one place model calls go through: admission, timeouts, executor threads and adaptive batching.

Handlers ``await dispatcher.predict(...)``; the model runs on an executor thread so the IO loop
stays free. Batching is timer-less by default: while a signature's model call is running, new
requests queue; when it returns, everything queued (up to ``max_batch_size`` rows) runs as one call
and the outputs are split back by row counts. An idle model therefore adds no wait. A failing
merged call is retried request by request, so one bad request never fails its neighbours.

When no other request is in progress and a signature's calls have been short (under
``inline_call_ms``), the call runs on the IO loop itself: handing a sub-millisecond call to a
thread and back costs about as much as the call, and nothing else is waiting for the loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from modelserver.errors import Overloaded, RequestTimeout
from modelserver.interface import Servable, Signature, Tensors
from modelserver.metrics import Metrics
from modelserver.settings import Settings

T = TypeVar("T")


class _Item:
    """One request waiting in a batch queue: its inputs, rows, future and timeout."""

    __slots__ = ("inputs", "rows", "future", "timer")

    def __init__(self, inputs: Tensors, rows: int, future: asyncio.Future[Tensors]) -> None:
        self.inputs = inputs
        self.rows = rows
        self.future = future
        self.timer: asyncio.TimerHandle | None = None


def batchable(sig: Signature) -> bool:
    """Rows of several requests can be stacked only when every input and output has a free batch dim."""
    return sig.batchable and all(t.batched for t in sig.inputs) and all(t.batched for t in sig.outputs)


def merge(items: list[Tensors]) -> Tensors:
    return {name: np.concatenate([it[name] for it in items]) for name in items[0]}


def split(outputs: Tensors, rows: list[int]) -> list[Tensors]:
    """Cut merged outputs back into each request's rows; ValueError if an output is not per-row."""
    total = sum(rows)
    for name, arr in outputs.items():
        if arr.ndim == 0 or arr.shape[0] != total:
            raise ValueError(f"output {name!r} has {arr.shape[:1]} rows, expected {total}")
    bounds = np.cumsum(rows)[:-1]
    parts: list[Tensors] = [{} for _ in rows]
    for name, arr in outputs.items():
        for i, piece in enumerate(np.split(arr, bounds)):
            parts[i][name] = piece
    return parts


def run_group(servable: Servable, signature: str, group: list[Tensors], rows: list[int]) -> list[Tensors | Exception]:
    """Run several requests as one model call (on an executor thread); each gets its own rows.

    If the merged call fails, or its outputs cannot be cut back into rows, each request runs
    alone, so one bad request never fails its neighbours: the result for each is its outputs or
    the exception its own call raised.
    """
    if len(group) > 1:
        try:
            return list(split(servable.predict(signature, merge(group)), rows))
        except Exception:  # isolate: run each request alone below
            pass
    results: list[Tensors | Exception] = []
    for inputs in group:
        try:
            results.append(servable.predict(signature, inputs))
        except Exception as e:
            results.append(e)
    return results


class CallCost:
    """A running estimate of one signature's model-call time, to decide whether a call may run inline.

    Calls are timed where they run (an executor thread or the IO loop); the estimate is an
    exponentially weighted mean of seconds per call and rows per call, scaled up for bigger requests.
    """

    __slots__ = ("seconds", "rows")

    def __init__(self) -> None:
        self.seconds: float | None = None
        self.rows = 1.0

    def add(self, seconds: float, rows: int) -> None:
        if self.seconds is None:
            self.seconds, self.rows = seconds, float(rows)
        else:
            self.seconds += 0.2 * (seconds - self.seconds)
            self.rows += 0.2 * (rows - self.rows)

    def estimate(self, rows: int) -> float | None:
        """Seconds a call with ``rows`` rows is expected to take; None before the first call."""
        if self.seconds is None:
            return None
        return self.seconds * max(1.0, rows / max(self.rows, 1.0))

    def timed(self, rows: int, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.add(time.perf_counter() - start, rows)


class _BatchQueue:
    """Requests waiting for one servable signature, and the one merged call in flight for it.

    Driven by callbacks on the IO loop, with no task per request or per batch: ``submit`` starts a
    call when the model is idle; the call's completion resolves its requests and starts the next
    call with everything that queued meanwhile. Merging and splitting happen on the executor thread.
    """

    def __init__(self, dispatcher: Dispatcher, servable: Servable, signature: str, cost: CallCost) -> None:
        self.d = dispatcher
        self.servable = servable
        self.signature = signature
        self.loop = asyncio.get_running_loop()
        self.waiting: deque[_Item] = deque()
        self.queued_rows = 0
        self.busy = False
        self.cost = cost
        self.sizes, self.depth = dispatcher.metrics.model(servable.name)

    def submit(self, inputs: Tensors, rows: int) -> asyncio.Future[Tensors]:
        future: asyncio.Future[Tensors] = self.loop.create_future()
        item = _Item(inputs, rows, future)
        item.timer = self.loop.call_later(self.d.settings.timeout_seconds, _expire, item, self.d.timed_out)
        self.waiting.append(item)
        self.queued_rows += rows
        self.depth.inc(rows)
        if not self.busy:
            self.busy = True
            delay = self.d.settings.max_latency_ms / 1000.0
            if delay > 0 and self.queued_rows < self.d.settings.max_batch_size:
                self.loop.call_later(delay, self._start)
            else:
                self._start()
        return future

    def _take(self) -> list[_Item]:
        group: list[_Item] = []
        rows = 0
        cap = self.d.settings.max_batch_size
        while self.waiting:
            item = self.waiting[0]
            if item.future.done():  # timed out while queued: drop it
                self.waiting.popleft()
                self.queued_rows -= item.rows
                self.depth.dec(item.rows)
                continue
            if group and rows + item.rows > cap:
                break
            group.append(self.waiting.popleft())
            rows += item.rows
        self.queued_rows -= rows
        self.depth.dec(rows)
        return group

    def _start(self) -> None:
        group = self._take()
        if not group:
            self.busy = False
            return
        inputs, rows = [it.inputs for it in group], [it.rows for it in group]
        job = self.d.executor.submit(
            self.cost.timed, sum(rows), lambda: run_group(self.servable, self.signature, inputs, rows)
        )
        job.add_done_callback(lambda f: self._post(group, f))

    def _post(self, group: list[_Item], job: Future[list[Tensors | Exception]]) -> None:
        """From the executor thread: hand the finished call back to the IO loop."""
        try:
            self.loop.call_soon_threadsafe(self._finished, group, job)
        except RuntimeError:  # the loop has closed (the server stopped): nobody waits any more
            pass

    def _finished(self, group: list[_Item], job: Future[list[Tensors | Exception]]) -> None:
        try:
            results: list[Tensors | Exception] = job.result()
        except BaseException as e:  # the executor shut down, or a bug: fail this group, go on
            results = [e if isinstance(e, Exception) else RuntimeError(str(e))] * len(group)
        merged = len(group) > 1 and not any(isinstance(r, Exception) for r in results)
        if merged:
            self.sizes.observe(sum(it.rows for it in group))
        for item, result in zip(group, results):
            if not merged and not isinstance(result, Exception):
                self.sizes.observe(item.rows)
            _settle(item, result)
        self._start()


def _expire(item: _Item, error: Callable[[], RequestTimeout]) -> None:
    if not item.future.done():
        item.future.set_exception(error())


def _settle(item: _Item, result: Tensors | Exception) -> None:
    if item.timer is not None:
        item.timer.cancel()
    if item.future.done():
        return
    if isinstance(result, Exception):
        item.future.set_exception(result)
    else:
        item.future.set_result(result)


class _Admission:
    """``with dispatcher._slot:`` one of ``max_concurrent_requests`` places, or 429 before any work
    starts (a class, not a generator context manager: it is entered once a request)."""

    __slots__ = ("d",)

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher

    def __enter__(self) -> None:
        d = self.d
        if d.active >= d.settings.max_concurrent_requests:
            raise Overloaded(
                f"too many requests in progress ({d.active}, limit "
                f"{d.settings.max_concurrent_requests}); retry shortly"
            )
        d.active += 1

    def __exit__(self, *exc: object) -> None:
        self.d.active -= 1


class Dispatcher:
    """Admission control, executor threads, per-signature batch queues and timeouts."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        threads = settings.model_threads or (os.cpu_count() or 1)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="model")
        self.active = 0
        self._slot = _Admission(self)
        self._queues: dict[tuple[str, int, str], _BatchQueue] = {}
        #: per signature: its call-time estimate, and whether requests to it can be merged
        self._signatures: dict[tuple[str, int, str], tuple[CallCost, bool]] = {}

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking model function on an executor thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def timed_out(self) -> RequestTimeout:
        return RequestTimeout(f"the model did not answer within {self.settings.timeout_seconds:g} seconds")

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on an executor thread within an admission slot and the timeout."""
        with self._slot:
            return await self._timed_call(fn)

    async def _timed_call(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.wait_for(self.run(fn), self.settings.timeout_seconds)
        except TimeoutError:
            raise self.timed_out() from None

    def _inline(self, cost: CallCost, rows: int) -> bool:
        """Whether a call may run on the IO loop: this is the only request in progress, and short."""
        limit = self.settings.inline_call_ms / 1000.0
        if limit <= 0 or self.active != 1:
            return False
        expected = cost.estimate(rows)
        return expected is not None and expected < limit

    async def predict(self, servable: Servable, signature: str, inputs: Tensors, rows: int) -> Tensors:
        """Outputs for one request's batch, merged with concurrent requests where possible."""
        key = (servable.name, servable.version, signature)
        sizes = self.metrics.model(servable.name)[0]
        known = self._signatures.get(key)
        if known is None:
            known = self._signatures[key] = (CallCost(), batchable(servable.signatures[signature]))
        cost, merges = known

        def call() -> Tensors:
            return cost.timed(rows, lambda: servable.predict(signature, inputs))

        if merges and self.settings.batching and rows <= self.settings.max_batch_size:
            queue = self._queues.get(key)
            if queue is None or queue.servable is not servable or queue.loop is not asyncio.get_running_loop():
                queue = self._queues[key] = _BatchQueue(self, servable, signature, cost)
            with self._slot:  # the queue's own timer answers RequestTimeout: no task per request
                if not queue.busy and self.settings.max_latency_ms <= 0 and self._inline(cost, rows):
                    sizes.observe(rows)
                    return call()
                return await queue.submit(inputs, rows)
        sizes.observe(rows)
        with self._slot:
            return call() if self._inline(cost, rows) else await self._timed_call(call)

    async def explain(self, servable: Servable, signature: str, inputs: Tensors, target: str | None) -> Tensors:
        steps = self.settings.explain_steps
        return await self.call(lambda: servable.explain(signature, inputs, target=target, steps=steps))

    def forget(self, model: str) -> None:
        """Drop what was kept of a model that was unloaded (its batch queues hold its servable)."""
        for table in (self._queues, self._signatures):
            for key in [k for k in table if k[0] == model]:
                del table[key]

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
