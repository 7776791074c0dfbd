"""kopf registrations, and the one place the operator's errors become kopf's.

- create, update, resume: reconcile (``reconcile``); a ``SpecError`` becomes a permanent error, a
  ``TransientError`` a temporary one with backoff (``errors.to_kopf``);
- a resync loop every ``resync_seconds``: reconcile everything again (drift repair);
- events of the children (Deployments, Pods, Services): refresh the owner's status at once, and
  re-create a deleted child.
No finalizer is added: deleting a ModelDeployment removes its children through ownerReferences,
even while the operator is down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from modeldeploy_operator import GROUP, PLURAL, VERSION
from modeldeploy_operator.errors import OperatorError, to_kopf
from modeldeploy_operator.reconcile import CONFIG, reconcile, refresh_owner, resync_all

__all__ = ["CONFIG"]

MANAGED = {"app.kubernetes.io/managed-by": "modeldeploy"}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.peering.standalone = True
    settings.scanning.disabled = True  # no CRD watching: the RBAC stays to the resources we manage
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def on_change(body: kopf.Body, logger: kopf.Logger, retry: int, **_: Any) -> None:
    try:
        await reconcile(body, logger)
    except OperatorError as e:
        raise to_kopf(e, retry) from e


async def resync_forever() -> None:
    """Reconcile every ModelDeployment each ``resync_seconds``: repairs hand-edited children.

    A loop of our own rather than a kopf timer, because kopf timers put a finalizer on every
    resource, which would block deletion while the operator is down.
    """
    while True:
        await asyncio.sleep(CONFIG.resync_seconds)
        await resync_all()


@kopf.on.startup()
async def start_resync(memo: kopf.Memo, **_: Any) -> None:
    memo["resync"] = asyncio.create_task(resync_forever())


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if task is not None:
        task.cancel()


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def deployment_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    await refresh_owner(body, reapply=type == "DELETED")


@kopf.on.event("", "v1", "services", labels=MANAGED)
async def service_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    if type == "DELETED":
        await refresh_owner(body, reapply=True)


@kopf.on.event("", "v1", "pods", labels=MANAGED)
async def pod_event(body: kopf.Body, **_: Any) -> None:
    await refresh_owner(body, reapply=False)
