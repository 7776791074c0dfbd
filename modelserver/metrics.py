"""Prometheus metrics: requests, latency, in-flight requests, batch sizes and queue depth.

Each server owns its registry (tests run several servers in one process); ``GET /metrics`` renders it.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelserver_requests", "HTTP requests served",
            ["model", "protocol", "endpoint", "status"], registry=r,
        )
        self.latency = Histogram(
            "modelserver_request_duration_seconds", "time from request headers to response",
            ["model", "protocol", "endpoint"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("modelserver_in_flight_requests", "requests being handled", registry=r)
        self.batch_size = Histogram(
            "modelserver_batch_size", "rows per model call", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "modelserver_queue_depth", "rows waiting for the model", ["model"], registry=r
        )
        self.ready = Gauge("modelserver_ready", "1 when every model version is loaded", registry=r)
        # labelled children, looked up once per label set instead of once per request
        self._done: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self._per_model: dict[str, tuple[Any, Any]] = {}

    def request_done(self, model: str, protocol: str, endpoint: str, status: int, seconds: float) -> None:
        key = (model, protocol, endpoint, status)
        children = self._done.get(key)
        if children is None:
            children = self._done[key] = (
                self.requests.labels(model, protocol, endpoint, str(status)),
                self.latency.labels(model, protocol, endpoint),
            )
        children[0].inc()
        children[1].observe(seconds)

    def model(self, name: str) -> tuple[Any, Any]:
        """The batch-size histogram and queue-depth gauge of one model."""
        children = self._per_model.get(name)
        if children is None:
            children = self._per_model[name] = (self.batch_size.labels(name), self.queue_depth.labels(name))
        return children

    def render(self) -> bytes:
        return generate_latest(self.registry)
