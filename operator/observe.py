"""Observing what the cluster runs for a ModelDeployment, and writing its status from that.

The Deployment, its pods (waiting reasons, last exits), the model server's own readiness answer
(its reason code, through the pod proxy) and the served model's signature (from a ready pod) are
read here; ``status`` turns them into the Ready condition; ``write_status`` patches the status
only when it changed.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import orjson
from modeldeploy_operator import builders
from modeldeploy_operator import spec as spec_mod
from modeldeploy_operator import status as status_mod
from modeldeploy_operator.kube import Kube

from modelserver import contract


def pod_view(k: Kube, pod: dict[str, Any], spec: spec_mod.Spec) -> status_mod.PodView:
    st = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions", []))
    view = status_mod.PodView(name=pod["metadata"]["name"], ready=ready)
    for cs in st.get("initContainerStatuses", []):
        if cs.get("name") != builders.FETCH_CONTAINER:
            continue
        state = cs.get("state") or {}
        failed = state.get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
        if failed and failed.get("exitCode") not in (0, None) and "running" not in state:
            view.fetch_failed = _fetch_message(failed)
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
        code, text = k.pod_get(spec.namespace, view.name, builders.PORT, contract.READY_PATH)
        if code == 503:
            try:
                answer = orjson.loads(text)
            except orjson.JSONDecodeError:
                view.unready_reason = text[:300]
            else:
                view.unready_reason = str(answer.get("error", ""))
                view.unready_code = str(answer.get("reason", ""))
    return view


def _fetch_message(terminated: dict[str, Any]) -> str:
    """What the fetch said last: its error line (``modelserver fetch: ...``), else its exit code."""
    text = (terminated.get("message") or "").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    said = next((ln for ln in reversed(lines) if ln.startswith("modelserver fetch:")), lines[-1] if lines else "")
    said = said.removeprefix("modelserver fetch:").strip()
    return said[:500] or f"exit code {terminated.get('exitCode')}"


def model_info(k: Kube, spec: spec_mod.Spec, pods: list[status_mod.PodView]) -> dict[str, Any] | None:
    """The served model's name, versions, platform and tensors, from the first ready pod."""
    for p in pods:
        if p.ready:
            code, text = k.pod_get(spec.namespace, p.name, builders.PORT, contract.model_metadata_path(spec.model_name))
            if code == 200:
                meta = orjson.loads(text)
                return {key: meta.get(key) for key in ("name", "versions", "platform", "inputs", "outputs")}
    return None


def repository_info(k: Kube, spec: spec_mod.Spec, pods: list[status_mod.PodView]) -> dict[str, Any] | None:
    """How many models the repository holds and how many are loaded, from the first ready pod's metrics."""
    for p in pods:
        if p.ready:
            code, text = k.pod_get(spec.namespace, p.name, builders.PORT, contract.METRICS_PATH)
            if code == 200:
                return status_mod.repository_counts(text)
    return None


def write_status(
    k: Kube, body: Mapping[str, Any], spec: spec_mod.Spec | None, spec_error: str, *, keep_invalid: bool = False
) -> None:
    """Observe the children and write the owner's status (only when it changed).

    ``keep_invalid``: a refresh after a child's event leaves an InvalidSpec condition alone; only a
    reconcile that succeeds clears it.
    """
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
            pod_view(k, p, spec)
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
            grpcAddress=builders.grpc_address(spec),
        )
        key, info = ("model", model_info(k, spec, pods)) if spec.repository is None else (
            "repository", repository_info(k, spec, pods))
        if info is not None:
            new[key] = info
        elif old.get(key):
            new[key] = old[key]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new["conditions"] = status_mod.merge_conditions(list(old.get("conditions", [])), status_mod.ready_condition(observed), now)
    if {key: old.get(key) for key in new} != new:
        k.patch_status(meta["namespace"], meta["name"], new)
