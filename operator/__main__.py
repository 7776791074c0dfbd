"""``python -m modeldeploy_operator``: run the operator (namespaces from MODELDEPLOY_NAMESPACES)."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import kopf
from modeldeploy_operator import handlers


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = handlers.CONFIG
    liveness = f"http://0.0.0.0:{cfg.health_port}/healthz" if cfg.health_port else None
    # the pod's name, rather than kopf's default (which looks up the user name of the process)
    identity: Any = f"{socket.gethostname()}@{os.getpid()}"  # kopf's Identity is a NewType of str
    if cfg.namespaces:
        kopf.run(standalone=True, namespaces=list(cfg.namespaces), liveness_endpoint=liveness, identity=identity)
    else:
        kopf.run(standalone=True, clusterwide=True, liveness_endpoint=liveness, identity=identity)


if __name__ == "__main__":
    main()
