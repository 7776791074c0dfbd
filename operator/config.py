"""The operator's own settings, from its environment (set by the Helm chart)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from modelserver import __version__


@dataclass(frozen=True)
class Config:
    #: the modelserver image for pods whose spec names none
    image: str = f"modeldeploy/modelserver:{__version__}"
    #: how often every ModelDeployment is reconciled again (drift repair), in seconds
    resync_seconds: float = 30.0
    #: namespaces to watch; empty means the whole cluster
    namespaces: tuple[str, ...] = ()
    #: port of the operator's liveness endpoint (0: none)
    health_port: int = 8080

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        spaces = tuple(n.strip() for n in env.get("MODELDEPLOY_NAMESPACES", "").split(",") if n.strip())
        return cls(
            image=env.get("MODELDEPLOY_SERVER_IMAGE", cls.image),
            resync_seconds=float(env.get("MODELDEPLOY_RESYNC_SECONDS", cls.resync_seconds)),
            namespaces=spaces,
            health_port=int(env.get("MODELDEPLOY_HEALTH_PORT", cls.health_port)),
        )
