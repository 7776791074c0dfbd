"""What every handler shares: settings, the models, the dispatcher, metrics and lifecycle state."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from modelserver.dispatch import Dispatcher
from modelserver.errors import Unauthorized
from modelserver.metrics import Metrics
from modelserver.runtime.repository import ModelRepository
from modelserver.settings import Settings


@dataclass
class ServerContext:
    settings: Settings
    repository: ModelRepository
    dispatcher: Dispatcher
    metrics: Metrics
    api_keys: frozenset[str] = field(default_factory=frozenset)
    draining: bool = False
    in_flight: int = 0

    def __post_init__(self) -> None:
        # read when scraped, so requests do not each update a gauge
        self.metrics.in_flight.set_function(lambda: self.in_flight)

    @property
    def ready(self) -> bool:
        return self.repository.ready and not self.draining

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
