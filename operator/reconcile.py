"""Reconciling one ModelDeployment: parse the spec, apply the children, write the status.

Level-triggered and idempotent: ``reconcile`` compares nothing with the last run, it applies the
whole desired state each time (server-side apply changes nothing when nothing differs), so the
kopf handlers, the periodic resync and a deleted child's event all call the same function. It
raises the operator's own errors (``errors``); the kopf entry points in ``handlers`` convert them
to kopf's retry behaviour. Kubernetes Events on the resource say what changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import kopf
from modeldeploy_operator import KIND, builders
from modeldeploy_operator import spec as spec_mod
from modeldeploy_operator.apply import apply_children
from modeldeploy_operator.config import Config
from modeldeploy_operator.errors import OperatorError, SpecError
from modeldeploy_operator.kube import Kube
from modeldeploy_operator.observe import write_status

log = logging.getLogger("modeldeploy.operator")
CONFIG = Config.from_env()
#: one reconcile (or status refresh) at a time per resource
_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
_kube: Kube | None = None

Body = kopf.Body | dict[str, Any]


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


def _ref(body: Body) -> Any:
    """What kopf's event posting needs: the object's apiVersion, kind and metadata."""
    return {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": dict(body["metadata"])}


async def reconcile(body: Body, logger: logging.Logger | kopf.Logger = log) -> None:
    """Apply the children and write the status; a bad spec is recorded in the status, then raised."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    async with _locks[key]:
        try:
            spec = spec_mod.parse(meta["name"], meta["namespace"], dict(body.get("spec") or {}))
            changed = await asyncio.to_thread(apply_children, kube(), spec, meta["uid"], CONFIG.image)
        except SpecError as e:
            kopf.warn(_ref(body), reason="InvalidSpec", message=str(e))
            await asyncio.to_thread(write_status, kube(), body, None, str(e))
            raise
        for kind, verb in changed:
            kopf.info(_ref(body), reason=verb, message=f"{verb} {kind} {builders.child_name(spec.name)}")
            logger.info(f"{verb} {kind}")
        await asyncio.to_thread(write_status, kube(), body, spec, "")


async def resync_all() -> None:
    """Reconcile every ModelDeployment once (repairs hand-edited or deleted children)."""
    try:
        items = await asyncio.to_thread(kube().list_all, "ModelDeployment", CONFIG.namespaces)
    except OperatorError as e:
        log.warning(f"resync: cannot list ModelDeployments: {e}")
        return
    for body in items:
        if body["metadata"].get("deletionTimestamp"):
            continue
        try:
            await reconcile(body)
        except OperatorError as e:
            log.info(f"resync of {body['metadata']['name']}: {e}")
        except Exception:  # a bug in one resource's reconcile must not stop the loop for the others
            log.exception(f"resync of {body['metadata']['name']} failed")


async def refresh_owner(child: Body, *, reapply: bool) -> None:
    """A child changed: refresh its owner's status, or reconcile the owner when the child is gone."""
    owners = [r for r in child["metadata"].get("ownerReferences", []) if r.get("kind") == KIND and r.get("controller")]
    if not owners:
        return
    ns = child["metadata"]["namespace"]
    try:
        owner = await asyncio.to_thread(kube().get, "ModelDeployment", ns, owners[0]["name"])
        if owner is None or owner["metadata"].get("deletionTimestamp") or owner["metadata"]["uid"] != owners[0]["uid"]:
            return  # the owner is going away: garbage collection removes the child
        if reapply:
            await reconcile(owner)
        else:
            spec = spec_mod.parse(owner["metadata"]["name"], ns, owner.get("spec") or {})
            async with _locks[(ns, owner["metadata"]["name"])]:
                await asyncio.to_thread(write_status, kube(), owner, spec, "", keep_invalid=True)
    except OperatorError as e:
        log.warning("status refresh failed", extra={"owner": owners[0]["name"], "error": str(e)})
