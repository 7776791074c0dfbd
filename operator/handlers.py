"""kopf handlers: reconcile ModelDeployments, and keep their status true to what the cluster runs.

- create, update, resume, and a timer every ``resync_seconds``: apply the children (drift repair);
- events of the children (Deployments, Pods, Services): refresh the owner's status at once, and
  re-create a deleted child.
No finalizer is added: deleting a ModelDeployment removes its children through ownerReferences,
even while the operator is down.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections import defaultdict
from typing import Any

import kopf
import orjson
from modeldeploy_operator import GROUP, KIND, PLURAL, VERSION, builders
from modeldeploy_operator import spec as spec_mod
from modeldeploy_operator import status as status_mod
from modeldeploy_operator.config import Config
from modeldeploy_operator.errors import OperatorError, SpecError, to_kopf
from modeldeploy_operator.kube import Kube

log = logging.getLogger("modeldeploy.operator")
CONFIG = Config.from_env()
MANAGED = {"app.kubernetes.io/managed-by": "modeldeploy"}
_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


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


# -- reconcile ------------------------------------------------------------------------------------


def _is_ours(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


def apply_children(spec: spec_mod.Spec, uid: str) -> list[tuple[str, str]]:
    """Apply every child; returns what changed as (kind, Created|Updated|Deleted).

    Every child is checked before any is written, so a name clash changes nothing.
    """
    k = kube()
    name = builders.child_name(spec.name)
    plan = [(kind, desired, k.get(kind, spec.namespace, name)) for kind, desired in builders.children(spec, uid, CONFIG.image)]
    for kind, _, current in plan:
        if current is not None and not _is_ours(current, uid):
            raise SpecError(f"a {kind} named {name!r} already exists and is not managed by this {KIND}; rename one of them")
    changed = []
    for kind, desired, current in plan:
        if desired is None:
            if current is not None:
                k.delete(kind, spec.namespace, name)
                changed.append((kind, "Deleted"))
            continue
        applied = k.apply(desired)
        if current is None:
            changed.append((kind, "Created"))
        elif applied["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            changed.append((kind, "Updated"))
    return changed


def _ref(body: kopf.Body | dict[str, Any]) -> Any:
    """What kopf's event posting needs: the object's apiVersion, kind and metadata."""
    return {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": dict(body["metadata"])}


async def reconcile(body: kopf.Body | dict[str, Any], logger: logging.Logger | kopf.Logger = log, retry: int = 0) -> None:
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    async with _locks[key]:
        try:
            spec = spec_mod.parse(meta["name"], meta["namespace"], dict(body.get("spec") or {}))
            changed = await asyncio.to_thread(apply_children, spec, meta["uid"])
        except SpecError as e:
            kopf.warn(_ref(body), reason="InvalidSpec", message=str(e))
            await asyncio.to_thread(write_status, body, None, str(e))
            raise to_kopf(e) from e
        except OperatorError as e:
            raise to_kopf(e, retry) from e
        for kind, verb in changed:
            kopf.info(_ref(body), reason=verb, message=f"{verb} {kind} {builders.child_name(spec.name)}")
            logger.info(f"{verb} {kind}")
        await asyncio.to_thread(write_status, body, spec, "")


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def on_change(body: kopf.Body, logger: kopf.Logger, retry: int, **_: Any) -> None:
    await reconcile(body, logger, retry)


async def resync_forever() -> None:
    """Reconcile every ModelDeployment each ``resync_seconds``: repairs hand-edited children.

    A loop of our own rather than a kopf timer, because kopf timers put a finalizer on every
    resource, which would block deletion while the operator is down.
    """
    while True:
        await asyncio.sleep(CONFIG.resync_seconds)
        try:
            items = await asyncio.to_thread(kube().list_all, "ModelDeployment", CONFIG.namespaces)
        except OperatorError as e:
            log.warning(f"resync: cannot list ModelDeployments: {e}")
            continue
        for body in items:
            if body["metadata"].get("deletionTimestamp"):
                continue
            try:
                await reconcile(body)
            except (kopf.PermanentError, kopf.TemporaryError) as e:
                log.info(f"resync of {body['metadata']['name']}: {e}")


@kopf.on.startup()
async def start_resync(memo: kopf.Memo, **_: Any) -> None:
    memo["resync"] = asyncio.create_task(resync_forever())


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if task is not None:
        task.cancel()


# -- status ---------------------------------------------------------------------------------------


def _pod_view(k: Kube, pod: dict[str, Any], spec: spec_mod.Spec) -> status_mod.PodView:
    st = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions", []))
    view = status_mod.PodView(name=pod["metadata"]["name"], ready=ready)
    statuses = st.get("initContainerStatuses", []) + st.get("containerStatuses", [])
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] not in ("PodInitializing", "ContainerCreating"):
            view.waiting_reason, view.waiting_message = waiting["reason"], waiting.get("message", "")
            last = (cs.get("lastState") or {}).get("terminated") or {}
            if last:
                view.last_exit = f"exit code {last.get('exitCode')}: {(last.get('message') or last.get('reason') or '').strip()[:300]}"
            break
    running = any("running" in (cs.get("state") or {}) for cs in st.get("containerStatuses", []))
    if not ready and running:
        code, text = k.pod_get(spec.namespace, view.name, builders.PORT, "/v2/health/ready")
        if code == 503:
            try:
                view.unready_reason = str(orjson.loads(text).get("error", ""))
            except orjson.JSONDecodeError:
                view.unready_reason = text[:300]
    return view


def _model_info(k: Kube, spec: spec_mod.Spec, pods: list[status_mod.PodView]) -> dict[str, Any] | None:
    for p in pods:
        if p.ready:
            code, text = k.pod_get(spec.namespace, p.name, builders.PORT, f"/v2/models/{spec.model_name}")
            if code == 200:
                meta = orjson.loads(text)
                return {k2: meta.get(k2) for k2 in ("name", "versions", "platform", "inputs", "outputs")}
    return None


def write_status(
    body: kopf.Body | dict[str, Any], spec: spec_mod.Spec | None, spec_error: str, *, keep_invalid: bool = False
) -> None:
    """Observe the children and write the owner's status (only when it changed).

    ``keep_invalid``: a refresh after a child's event leaves an InvalidSpec condition alone; only a
    reconcile that succeeds clears it.
    """
    k = kube()
    meta = body["metadata"]
    old = dict(body.get("status") or {})
    if keep_invalid and any(c.get("reason") == "InvalidSpec" for c in old.get("conditions", [])):
        return
    generation = int(meta.get("generation") or 0)
    new: dict[str, Any] = {"observedGeneration": generation}
    if spec is None:
        observed = status_mod.Observed(generation, 0, None, spec_error=spec_error)
    else:
        name = builders.child_name(spec.name)
        dep = k.get("Deployment", spec.namespace, name)
        pods = [
            _pod_view(k, p, spec)
            for p in k.list_objects("Pod", spec.namespace, builders.selector_string(spec))
            if not p["metadata"].get("deletionTimestamp")
        ]
        desired = int(((dep or {}).get("spec") or {}).get("replicas", spec.replicas))
        observed = status_mod.Observed(generation, desired, dep, pods)
        dst = (dep or {}).get("status") or {}
        ready = int(dst.get("readyReplicas") or 0)
        new.update(
            replicas=int(dst.get("replicas") or 0),
            readyReplicas=ready,
            replicaSummary=f"{ready}/{desired}",
            selector=builders.selector_string(spec),
            url=builders.url(spec),
        )
        model = _model_info(k, spec, pods)
        if model is not None:
            new["model"] = model
        elif old.get("model"):
            new["model"] = old["model"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new["conditions"] = status_mod.merge_conditions(list(old.get("conditions", [])), status_mod.ready_condition(observed), now)
    if {k2: old.get(k2) for k2 in new} != new:
        k.patch_status(meta["namespace"], meta["name"], new)


async def refresh_owner(child: kopf.Body, *, reapply: bool) -> None:
    """A child changed: refresh its owner's status, or reconcile it when the child is gone."""
    owners = [r for r in child["metadata"].get("ownerReferences", []) if r.get("kind") == KIND and r.get("controller")]
    if not owners:
        return
    ns = child["metadata"]["namespace"]
    owner = await asyncio.to_thread(kube().get, "ModelDeployment", ns, owners[0]["name"])
    if owner is None or owner["metadata"].get("deletionTimestamp") or owner["metadata"]["uid"] != owners[0]["uid"]:
        return  # the owner is going away: garbage collection removes the child
    try:
        if reapply:
            await reconcile(owner)
        else:
            spec = spec_mod.parse(owner["metadata"]["name"], ns, owner.get("spec") or {})
            async with _locks[(ns, owner["metadata"]["name"])]:
                await asyncio.to_thread(write_status, owner, spec, "", keep_invalid=True)
    except (OperatorError, kopf.PermanentError, kopf.TemporaryError) as e:
        log.warning("status refresh failed", extra={"owner": owner["metadata"]["name"], "error": str(e)})


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
