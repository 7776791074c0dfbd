"""What every transport shares in one server process: settings, the data plane, metrics, the API
keys, and lifecycle state (in-flight requests, draining, sibling workers' readiness)."""

from __future__ import annotations

import hmac
import os
import time
from dataclasses import dataclass, field

from modelserver.contract import NotReadyReason
from modelserver.dataplane import DataPlane
from modelserver.errors import Unauthorized
from modelserver.interface import Embedder, Generator
from modelserver.metrics import Metrics
from modelserver.readiness import WorkerGroup
from modelserver.settings import Settings


@dataclass
class ServerContext:
    settings: Settings
    plane: DataPlane
    metrics: Metrics
    api_keys: frozenset[str] = field(default_factory=frozenset)
    draining: bool = False
    in_flight: int = 0
    #: when the server started (seconds since the epoch): the ``created`` of OpenAI model cards
    started: float = field(default_factory=time.time)
    #: this worker's siblings when several processes share the port (``--workers``), else None
    workers: WorkerGroup | None = None
    #: the ``X-Modelserver-Worker`` header value (this process's id) when there are several workers
    worker_id: str = ""
    #: the gRPC server's port once it serves (None: it does not)
    grpc_port: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None:
            self.worker_id = str(os.getpid())
        if not self.metrics.multiprocess:
            # read when scraped, so requests do not each update a gauge (several workers: see serve)
            self.metrics.in_flight.set_function(lambda: self.in_flight)

    @property
    def protocol(self) -> str:
        """The protocol presented first: the setting, or with ``auto`` the models' own (``openai``
        for a generative or embedding model, ``v1`` for tensor models)."""
        chosen = self.settings.protocol
        if chosen != "auto":
            return chosen
        for entry in self.plane.repository.models.values():
            for vs in entry.versions.values():
                if isinstance(vs.servable, (Generator, Embedder)):
                    return "openai"
        return "v1"

    @property
    def ready(self) -> bool:
        """Models loaded, not draining, and (with several workers) every worker's models loaded."""
        return self.plane.repository.ready and not self.draining and (self.workers is None or self.workers.all_ready())

    def not_ready(self) -> tuple[str, str]:
        """Why the server is not ready: a ``NotReadyReason`` code and a message for people."""
        repo = self.plane.repository
        failed = [  # a repository's model that fails is its own requests' concern, not the server's readiness
            f"{e.name} version {v.version}: {v.error}" for e in repo.models.values() for v in e.versions.values() if v.error
        ] if repo.root is None else []
        if failed:
            return NotReadyReason.LOAD_FAILED, "model failed to load: " + "; ".join(failed)
        if self.draining:
            return NotReadyReason.DRAINING, "shutting down"
        workers = self.workers
        if workers is not None and repo.ready:
            return NotReadyReason.WORKERS_LOADING, (
                f"workers still loading their models: {workers.ready_count} of {workers.size} ready"
            )
        return NotReadyReason.LOADING, "models are not loaded yet"

    def check_key(self, authorization: str | None, api_key: str | None) -> None:
        """Accept ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` when keys are set."""
        if not self.api_keys:
            return
        offered = api_key
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                offered = value.strip()
        if offered is None:
            raise Unauthorized(
                "this model needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        if not any(hmac.compare_digest(offered.encode(), k.encode()) for k in self.api_keys):
            raise Unauthorized("the API key is not valid for this model")
