"""Ready condition from observations: available, and each reason it is not."""

from __future__ import annotations

import pytest
from modeldeploy_operator import status
from modeldeploy_operator.status import Observed, PodView, merge_conditions, ready_condition

from modelserver.contract import NotReadyReason


def dep(ready=1, updated=1, replicas=1, generation=2, observed=2):
    return {
        "metadata": {"generation": generation},
        "status": {"readyReplicas": ready, "updatedReplicas": updated, "replicas": replicas, "observedGeneration": observed},
    }


@pytest.mark.parametrize(
    "observed,status,reason",
    [
        (Observed(3, 1, dep()), "True", "Available"),
        (Observed(3, 2, dep(ready=1, updated=2, replicas=2)), "False", "Progressing"),
        (Observed(3, 1, dep(observed=1)), "False", "Progressing"),
        (Observed(3, 1, dep(ready=1, updated=1, replicas=2)), "False", "Progressing"),  # old pod still there
        (Observed(3, 1, None), "False", "Creating"),
        (Observed(3, 0, dep(0, 0, 0)), "False", "ScaledToZero"),
        (Observed(3, 1, None, spec_error="bad uri"), "False", "InvalidSpec"),
        (Observed(3, 1, dep(0), [PodView("p", False, "ImagePullBackOff", "not found")]), "False", "ImagePullFailed"),
        (Observed(3, 1, dep(0), [PodView("p", False, "CrashLoopBackOff", last_exit="exit code 2: boom")]), "False", "CrashLooping"),
        (Observed(3, 1, dep(0), [PodView("p", False, unready_reason="model failed to load: x", unready_code=NotReadyReason.LOAD_FAILED)]), "False", "ModelLoadFailed"),
        (Observed(3, 1, dep(0), [PodView("p", False, unready_reason="models are not loaded yet", unready_code=NotReadyReason.LOADING)]), "False", "Progressing"),
        (Observed(3, 1, dep(0), [PodView("p", False, "CrashLoopBackOff", fetch_failed="s3://b/k: AccessDenied")]), "False", "FetchFailed"),
    ],
)
def test_ready_condition(observed, status, reason):
    c = ready_condition(observed)
    assert (c["status"], c["reason"], c["type"], c["observedGeneration"]) == (status, reason, "Ready", 3)
    assert c["message"]


def test_crash_loop_message_carries_the_exit():
    c = ready_condition(Observed(1, 1, dep(0), [PodView("p", False, "CrashLoopBackOff", last_exit="exit code 2: boom")]))
    assert "exit code 2: boom" in c["message"]


def test_transition_time_moves_only_when_status_changes():
    first = merge_conditions([], {"type": "Ready", "status": "False", "reason": "Creating"}, "t1")
    same = merge_conditions(first, {"type": "Ready", "status": "False", "reason": "Progressing"}, "t2")
    flipped = merge_conditions(same, {"type": "Ready", "status": "True", "reason": "Available"}, "t3")
    assert [c["lastTransitionTime"] for c in (first[0], same[0], flipped[0])] == ["t1", "t1", "t3"]
    assert same[0]["reason"] == "Progressing" and len(flipped) == 1


def test_errors_map_to_kopf_retries():
    import kopf
    from modeldeploy_operator.errors import SpecError, TransientError, backoff, classify_api_error, to_kopf

    assert isinstance(to_kopf(SpecError("fix it")), kopf.PermanentError)
    t = to_kopf(TransientError("busy", 2.0), retry=3)
    assert isinstance(t, kopf.TemporaryError) and t.delay == 16.0
    assert backoff(5.0, 50) == 300.0
    assert isinstance(classify_api_error(409, "conflict"), TransientError)
    assert isinstance(classify_api_error(503, "down"), TransientError)
    assert isinstance(classify_api_error(None, "timeout"), TransientError)
    assert isinstance(classify_api_error(422, "invalid"), SpecError)


def test_a_repository_s_counts_come_from_the_pod_s_metrics():
    text = "\n".join([
        "# HELP modelserver_repository_models models the repository holds, by state",
        "# TYPE modelserver_repository_models gauge",
        'modelserver_repository_models{state="ready"} 9.0',
        'modelserver_repository_models{state="loading"} 1.0',
        'modelserver_repository_models{state="failed"} 2.0',
        'modelserver_repository_models{state="unloaded"} 28.0',
        "# TYPE modelserver_ready gauge",
        "modelserver_ready 1.0",
    ]) + "\n"
    assert status.repository_counts(text) == {
        "models": 40, "loaded": 9, "loading": 1, "failed": 2, "summary": "9/40 loaded, 2 failed"}
    assert status.repository_counts("modelserver_ready 1.0\n") is None  # a server of one model
    assert status.repository_counts("<html>not metrics {") is None
