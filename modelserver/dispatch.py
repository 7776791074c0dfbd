"""The one place model calls go through: admission, timeouts, executor threads and adaptive batching.

Handlers ``await dispatcher.predict(...)``; the model runs on an executor thread so the IO loop
stays free. Batching is timer-less by default: while a signature's model call is running, new
requests queue; when it returns, everything queued (up to ``max_batch_size`` rows) runs as one call
and the outputs are split back by row counts. An idle model therefore adds no wait. A failing
merged call is retried request by request, so one bad request never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from modelserver.errors import Overloaded, RequestTimeout
from modelserver.metrics import Metrics
from modelserver.runtime.base import Servable, Signature, Tensors
from modelserver.settings import Settings

T = TypeVar("T")


@dataclass
class _Item:
    inputs: Tensors
    rows: int
    future: asyncio.Future[Tensors]


def batchable(sig: Signature) -> bool:
    """Rows of several requests can be stacked only when every input and output has a free batch dim."""
    return all(t.batched for t in sig.inputs) and all(t.batched for t in sig.outputs)


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


class _BatchQueue:
    """Requests waiting for one servable signature, and the one merged call in flight for it."""

    def __init__(self, dispatcher: Dispatcher, servable: Servable, signature: str) -> None:
        self.d = dispatcher
        self.servable = servable
        self.signature = signature
        self.waiting: list[_Item] = []
        self.busy = False

    def submit(self, inputs: Tensors, rows: int) -> asyncio.Future[Tensors]:
        future: asyncio.Future[Tensors] = asyncio.get_running_loop().create_future()
        self.waiting.append(_Item(inputs, rows, future))
        self.d.metrics.queue_depth.labels(self.servable.name).inc(rows)
        if not self.busy:
            self.busy = True
            asyncio.ensure_future(self._drain())
        return future

    def _take(self) -> list[_Item]:
        group: list[_Item] = []
        rows = 0
        while self.waiting:
            item = self.waiting[0]
            if item.future.done():  # timed out while queued: drop it
                self.waiting.pop(0)
                self.d.metrics.queue_depth.labels(self.servable.name).dec(item.rows)
                continue
            if group and rows + item.rows > self.d.settings.max_batch_size:
                break
            group.append(self.waiting.pop(0))
            rows += item.rows
        self.d.metrics.queue_depth.labels(self.servable.name).dec(rows)
        return group

    async def _drain(self) -> None:
        try:
            delay = self.d.settings.max_latency_ms / 1000.0
            while self.waiting:
                if delay > 0 and sum(i.rows for i in self.waiting) < self.d.settings.max_batch_size:
                    await asyncio.sleep(delay)
                group = self._take()
                if group:
                    await self._run(group)
        finally:
            self.busy = False

    async def _run(self, group: list[_Item]) -> None:
        if len(group) > 1:
            try:
                merged = merge([it.inputs for it in group])
                outputs = await self.d.run(self.servable.predict, self.signature, merged)
                self.d.metrics.batch_size.labels(self.servable.name).observe(sum(it.rows for it in group))
                for item, part in zip(group, split(outputs, [it.rows for it in group])):
                    _resolve(item.future, result=part)
                return
            except Exception:  # isolate: run each request alone below
                pass
        for item in group:
            try:
                out = await self.d.run(self.servable.predict, self.signature, item.inputs)
                self.d.metrics.batch_size.labels(self.servable.name).observe(item.rows)
                _resolve(item.future, result=out)
            except Exception as e:
                _resolve(item.future, error=e)


def _resolve(future: asyncio.Future[Tensors], *, result: Tensors | None = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)


class Dispatcher:
    """Admission control, executor threads, per-signature batch queues and timeouts."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        threads = settings.model_threads or (os.cpu_count() or 1)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="model")
        self.active = 0
        self._queues: dict[tuple[str, int, str], _BatchQueue] = {}

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking model function on an executor thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _admit(self, work: asyncio.Future[T] | Any) -> T:
        if self.active >= self.settings.max_concurrent_requests:
            if asyncio.isfuture(work):
                work.cancel()
            else:
                work.close()
            raise Overloaded(
                f"too many requests in progress ({self.active}, limit "
                f"{self.settings.max_concurrent_requests}); retry shortly"
            )
        self.active += 1
        try:
            return await asyncio.wait_for(work, self.settings.timeout_seconds)
        except TimeoutError:
            raise RequestTimeout(
                f"the model did not answer within {self.settings.timeout_seconds:g} seconds"
            ) from None
        finally:
            self.active -= 1

    async def predict(self, servable: Servable, signature: str, inputs: Tensors, rows: int) -> Tensors:
        """Outputs for one request's batch, merged with concurrent requests where possible."""
        sig = servable.signatures[signature]
        if self.settings.batching and batchable(sig) and rows <= self.settings.max_batch_size:
            key = (servable.name, servable.version, signature)
            queue = self._queues.get(key)
            if queue is None or queue.servable is not servable:
                queue = self._queues[key] = _BatchQueue(self, servable, signature)
            return await self._admit(queue.submit(inputs, rows))
        self.metrics.batch_size.labels(servable.name).observe(rows)
        return await self._admit(self.run(servable.predict, signature, inputs))

    async def explain(self, servable: Servable, signature: str, inputs: Tensors, target: str | None) -> Tensors:
        steps = self.settings.explain_steps
        return await self._admit(
            self.run(lambda: servable.explain(signature, inputs, target=target, steps=steps))
        )

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
