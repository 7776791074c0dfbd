"""The ModelDeployment's status from what the cluster shows: a pure function of observations.

Ready is True only when every desired replica of the current generation is ready. Otherwise the
reason says why, most specific first: an image that cannot be pulled, a model that could not be
fetched (the fetch init container failed), a crash loop, a model that failed to load (from the reason code of a pod's own readiness answer), or pods still starting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelserver.contract import REPOSITORY_MODELS_METRIC, REPOSITORY_STATES, NotReadyReason

IMAGE_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")


@dataclass
class PodView:
    """What the status needs to know about one pod."""

    name: str
    ready: bool
    waiting_reason: str = ""
    waiting_message: str = ""
    last_exit: str = ""
    #: the model server's own answer on its readiness path: the message, and the reason code
    #: (``contract.NotReadyReason``) that programs match
    unready_reason: str = ""
    unready_code: str = ""
    #: the model fetch (init container) failed: its last error, as the fetch printed it
    fetch_failed: str = ""


@dataclass
class Observed:
    generation: int
    desired: int
    deployment: dict[str, Any] | None
    pods: list[PodView] = field(default_factory=list)
    spec_error: str = ""


def _condition(status: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def ready_condition(o: Observed) -> dict[str, Any]:
    g = o.generation
    if o.spec_error:
        return _condition(False, "InvalidSpec", o.spec_error, g)
    if o.deployment is None:
        return _condition(False, "Creating", "the Deployment does not exist yet", g)
    st = o.deployment.get("status") or {}
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    total = int(st.get("replicas") or 0)
    current = int(st.get("observedGeneration") or 0) >= int(o.deployment["metadata"].get("generation") or 0)
    for p in o.pods:
        if p.waiting_reason in IMAGE_ERRORS:
            return _condition(False, "ImagePullFailed", f"pod {p.name}: {p.waiting_reason}: {p.waiting_message}".rstrip(": "), g)
    for p in o.pods:
        if p.fetch_failed:
            return _condition(False, "FetchFailed", f"pod {p.name}: the model could not be fetched: {p.fetch_failed}", g)
    for p in o.pods:
        if p.waiting_reason == "CrashLoopBackOff":
            detail = f" (last exit: {p.last_exit})" if p.last_exit else ""
            return _condition(False, "CrashLooping", f"pod {p.name} is crash looping{detail}", g)
        if p.waiting_reason in CONFIG_ERRORS:
            return _condition(False, "PodConfigError", f"pod {p.name}: {p.waiting_reason}: {p.waiting_message}", g)
    for p in o.pods:
        if p.unready_code == NotReadyReason.LOAD_FAILED:
            return _condition(False, "ModelLoadFailed", f"pod {p.name}: {p.unready_reason}", g)
    if o.desired == 0:
        return _condition(False, "ScaledToZero", "no replicas are requested", g)
    if current and updated >= o.desired and ready >= o.desired and total == updated:
        return _condition(True, "Available", f"{ready} of {o.desired} replicas serve the model", g)
    waiting = next((p.unready_reason for p in o.pods if p.unready_reason), "")
    message = f"{ready} of {o.desired} replicas ready, {updated} updated"
    return _condition(False, "Progressing", message + (f"; {waiting}" if waiting else ""), g)


def merge_conditions(old: list[dict[str, Any]], new: dict[str, Any], now: str) -> list[dict[str, Any]]:
    """Replace the condition of the same type, keeping its transition time if the status held."""
    previous = next((c for c in old if c.get("type") == new["type"]), None)
    stamp = previous["lastTransitionTime"] if previous and previous.get("status") == new["status"] and previous.get("lastTransitionTime") else now
    return [c for c in old if c.get("type") != new["type"]] + [{**new, "lastTransitionTime": stamp}]


def repository_counts(metrics_text: str) -> dict[str, Any] | None:
    """``status.repository`` from a pod's Prometheus metrics: the models its repository holds, how
    many are loaded, loading and failed, and a summary for ``kubectl get`` (None: no such gauge)."""
    counts: dict[str, int] = {}
    try:
        for family in text_string_to_metric_families(metrics_text):
            if family.name == REPOSITORY_MODELS_METRIC:
                for sample in family.samples:
                    counts[sample.labels.get("state", "")] = int(sample.value)
    except ValueError:  # not Prometheus text: no counts
        return None
    if not counts:
        return None
    by_state = {state: counts.get(state, 0) for state in REPOSITORY_STATES}
    total = sum(by_state.values())
    return {
        "models": total,
        "loaded": by_state["ready"],
        "loading": by_state["loading"],
        "failed": by_state["failed"],
        "summary": f"{by_state['ready']}/{total} loaded" + (f", {by_state['failed']} failed" if by_state["failed"] else ""),
    }
