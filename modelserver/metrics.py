"""Prometheus metrics: requests, latency, in-flight requests, batch sizes, queue depth; for
generative models tokens, time to first token and inter-token latency; for a model repository
loads, load time, evictions, waits for a load and what is loaded.

Each server owns its registry (tests run several servers in one process); ``GET /metrics`` renders it.
With several worker processes (``--workers``), prometheus_client's multiprocess mode is on: every
worker writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``, and ``GET /metrics`` on any worker
renders all of them, counters and histograms summed, gauges summed over live workers (``ready``: the
minimum, so it is 1 only when every worker is ready).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from modelserver.contract import REPOSITORY_MODELS_METRIC

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self, multiprocess: bool = False) -> None:
        #: values live in files shared by the worker processes (prometheus_client's multiprocess mode)
        self.multiprocess = multiprocess
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
        self.in_flight = Gauge(
            "modelserver_in_flight_requests", "requests being handled", registry=r, multiprocess_mode="livesum"
        )
        self.batch_size = Histogram(
            "modelserver_batch_size", "rows per model call", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "modelserver_queue_depth", "rows waiting for the model", ["model"], registry=r,
            multiprocess_mode="livesum",
        )
        self.ready = Gauge(
            "modelserver_ready", "1 when every model version is loaded", registry=r, multiprocess_mode="livemin"
        )
        # generative and embedding models
        self.tokens = Counter(
            "modelserver_tokens", "tokens read (prompt) and generated (completion)", ["model", "kind"], registry=r
        )
        self.ttft = Histogram(
            "modelserver_time_to_first_token_seconds", "from request to its first generated token",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.cancelled = Counter(
            "modelserver_cancelled_sequences", "generations stopped early because their client went away",
            ["model"], registry=r,
        )
        self.running = Gauge(
            "modelserver_running_sequences", "sequences being generated", ["model"], registry=r,
            multiprocess_mode="livesum",
        )
        self.itl = Histogram(
            "modelserver_inter_token_latency_seconds", "between consecutive tokens of one choice",
            ["model"], buckets=ITL_BUCKETS, registry=r,
        )
        self.constrained = Counter(
            "modelserver_constrained_sequences", "sequences generated under a grammar (response_format, tools)",
            ["model"], registry=r,
        )
        self.mask_seconds = Histogram(
            "modelserver_grammar_mask_seconds", "time a decode step spent computing its constrained rows' token masks",
            ["model"], buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=r,
        )
        # a model repository (--model-repository)
        self.models_loaded = Gauge(
            "modelserver_models_loaded", "models of the repository loaded", registry=r, multiprocess_mode="livesum"
        )
        self.repository_models = Gauge(
            REPOSITORY_MODELS_METRIC, "models the repository holds, by state (ready, loading, failed, "
            "unloaded)", ["state"], registry=r, multiprocess_mode="livesum",
        )
        self.loaded_bytes = Gauge(
            "modelserver_loaded_model_bytes", "memory the loaded models are counted at against the budget", registry=r,
            multiprocess_mode="livesum",
        )
        self.model_loads = Counter(
            "modelserver_model_loads", "model loads, by outcome (loaded, failed)", ["model", "outcome"], registry=r
        )
        self.model_load_seconds = Histogram(
            "modelserver_model_load_seconds", "time to load a model (and warm it)", ["model"],
            buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0), registry=r,
        )
        self.model_evictions = Counter(
            "modelserver_model_evictions", "models unloaded to make room in the memory budget", ["model"], registry=r
        )
        self.load_waits = Counter(
            "modelserver_load_waits", "requests that waited for their model to load", ["model"], registry=r
        )
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

    def watch_engine(self, name: str, engine: Any) -> None:
        """Report a generation engine's decode batch sizes, cancellations and running sequences."""
        sizes = self.batch_size.labels(name)
        engine.on_step = sizes.observe
        engine.on_cancel = self.cancelled.labels(name).inc
        engine.on_constrained = self.constrained.labels(name).inc
        engine.on_mask = self.mask_seconds.labels(name).observe
        self.running.labels(name).set_function(lambda: engine.load[0])

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker)
        return generate_latest(every_worker)
