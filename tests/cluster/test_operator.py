"""The operator against a real API server and controller manager (no kubelet: pods never run).

The operator runs as its own process (``python -m modeldeploy_operator``) watching one namespace,
so it can be killed and restarted like in a cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "modeldeployments.modeldeploy.dev.yaml"
GROUP, VERSION, PLURAL = "modeldeploy.dev", "v1alpha1", "modeldeployments"
RESYNC = 3


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except ApiException as e:
            last = e
            if e.status != 404:
                raise
        if last and not isinstance(last, ApiException):
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Operator:
    def __init__(self, kubeconfig: str, namespace: str, log: Path) -> None:
        self.args = [sys.executable, "-m", "modeldeploy_operator"]
        self.env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "MODELDEPLOY_NAMESPACES": namespace,
            "MODELDEPLOY_RESYNC_SECONDS": str(RESYNC),
            "MODELDEPLOY_HEALTH_PORT": "0",
            "MODELDEPLOY_SERVER_IMAGE": "modeldeploy/modelserver:test",
        }
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def api(kube_apiserver) -> Iterator[client.ApiClient]:
    from kubernetes import config

    c = config.new_client_from_config(config_file=str(kube_apiserver.kubeconfig))
    ext = client.ApiextensionsV1Api(c)
    crd = yaml.safe_load(CRD_FILE.read_text())
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as e:
        if e.status != 409:
            raise
    wait_for("CRD established", lambda: any(
        cond.type == "Established" and cond.status == "True"
        for cond in (ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or [])
    ))
    yield c
    c.close()


@pytest.fixture(scope="module")
def namespace(api) -> str:
    name = f"op-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def operator(kube_apiserver, namespace, tmp_path_factory) -> Iterator[Operator]:
    op = Operator(str(kube_apiserver.kubeconfig), namespace, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    yield op
    op.stop()


def mdep(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": spec or {}}


class Cluster:
    """Short names for the calls the tests make."""

    def __init__(self, api: client.ApiClient, ns: str) -> None:
        self.ns = ns
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.policy = client.PolicyV1Api(api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def patch(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def deployment(self, name: str) -> client.V1Deployment:
        return self.apps.read_namespaced_deployment(name, self.ns)

    def service(self, name: str) -> client.V1Service:
        return self.core.read_namespaced_service(name, self.ns)

    def env(self, name: str) -> dict[str, str]:
        c = self.deployment(name).spec.template.spec.containers[0]
        return {e.name: e.value for e in c.env}

    def ready(self, name: str) -> dict[str, Any] | None:
        conds = (self.get(name).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Ready"), None)

    def events(self, name: str) -> list[str]:
        items = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        return [f"{e.reason}: {e.message}" for e in items if e.involved_object.kind == "ModelDeployment"]


@pytest.fixture(scope="module")
def k(api, namespace, operator) -> Cluster:
    return Cluster(api, namespace)


def test_create_builds_children_and_reports_status(k: Cluster):
    k.create(mdep("iris", {"model": {"uri": "pvc://models/iris"}, "replicas": 1}))
    dep = wait_for("deployment", lambda: k.deployment("iris"))
    svc = wait_for("service", lambda: k.service("iris"))
    md = k.get("iris")
    for child in (dep, svc):
        (ref,) = child.metadata.owner_references
        assert ref.kind == "ModelDeployment" and ref.uid == md["metadata"]["uid"] and ref.controller
        assert child.metadata.labels["app.kubernetes.io/managed-by"] == "modeldeploy"
    assert dep.spec.template.spec.containers[0].args == ["serve", "/models/iris"]
    wait_for("a ReplicaSet from the controller manager", lambda: k.apps.list_namespaced_replica_set(
        k.ns, label_selector="app.kubernetes.io/instance=iris").items)
    ready = wait_for("status", lambda: k.ready("iris"))
    assert ready["status"] == "False" and ready["reason"] in ("Progressing", "Creating")
    status = k.get("iris")["status"]
    assert status["url"] == f"http://iris.{k.ns}.svc.cluster.local/v1/models/iris:predict"
    assert status["observedGeneration"] == md["metadata"]["generation"]
    assert status["selector"] == "app.kubernetes.io/name=modelserver,app.kubernetes.io/instance=iris"
    assert "modeldeploy.dev/finalizer" not in (k.get("iris")["metadata"].get("finalizers") or [])
    assert any("Created Deployment" in e for e in wait_for("events", lambda: k.events("iris")))


def test_update_rolls_the_spec_into_the_children(k: Cluster):
    k.patch("iris", {"replicas": 2, "protocol": "v2", "batching": {"maxBatchSize": 8}, "workers": 2})
    wait_for("replicas 2", lambda: k.deployment("iris").spec.replicas == 2)
    env = wait_for("env", lambda: (e := k.env("iris")).get("MODELSERVER_PROTOCOL") == "v2" and e)
    assert env["MODELSERVER_MAX_BATCH_SIZE"] == "8" and env["MODELSERVER_WORKERS"] == "2"
    wait_for("url", lambda: k.get("iris")["status"].get("url", "").endswith("/v2/models/iris/infer"))
    wait_for("observedGeneration", lambda: k.get("iris")["status"]["observedGeneration"] == k.get("iris")["metadata"]["generation"])


def test_reconciling_again_changes_nothing(k: Cluster):
    before = (k.deployment("iris").metadata.resource_version, k.service("iris").metadata.resource_version)
    time.sleep(RESYNC * 2.5)  # at least two timer reconciles
    after = (k.deployment("iris").metadata.resource_version, k.service("iris").metadata.resource_version)
    assert before == after


def test_deleted_and_hand_edited_children_are_restored(k: Cluster):
    old_uid = k.service("iris").metadata.uid
    k.core.delete_namespaced_service("iris", k.ns)
    svc = wait_for("service back", lambda: (s := k.service("iris")).metadata.uid != old_uid and s, timeout=RESYNC * 4)
    assert svc.spec.ports[0].port == 80
    k.apps.patch_namespaced_deployment("iris", k.ns, {"spec": {"replicas": 7}})
    wait_for("replicas restored", lambda: k.deployment("iris").spec.replicas == 2, timeout=RESYNC * 4)


def test_invalid_specs_are_refused_by_the_api_server(k: Cluster):
    cases = [
        (mdep("bad1", {"replicas": 1, "autoscaling": {"maxReplicas": 2}}), "either spec.replicas or spec.autoscaling"),
        (mdep("bad2", {"model": {"uri": "gs://bucket/model"}}), "model.uri must start with"),
        (mdep("bad11", {"model": {"uri": "s3://Bucket_Name/m"}}), "model.uri must start with"),
        (mdep("bad12", {"mapping": {"response": {"scores": "predictions"}}}), "spec.mapping.request: Required value"),
        (mdep("bad13", {"mapping": {"request": "instances"}}), "spec.mapping.request: Invalid value"),
        (mdep("bad3", {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}), "minReplicas must not exceed"),
        (mdep("bad4", {"protocol": "grpc"}), "Unsupported value"),
        (mdep("bad5", {"disruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}), "exactly one"),
        (mdep("9lives"), "metadata.name must be a DNS label"),
        (mdep("bad6", {"model": {"format": "onnx"}}), ("spec.model.format: Unsupported value", "tensorflow", "huggingface")),
        (mdep("bad7", {"generation": {"maxSequences": 4}}), "spec.generation applies to generative models only"),
        (mdep("bad8", {"model": {"format": "huggingface"}, "generation": {"maxSequences": 0}}),
         "spec.generation.maxSequences: Invalid value"),
        (mdep("bad9", {"model": {"format": "huggingface"}, "generation": {"maxModelLen": -1}}),
         "spec.generation.maxModelLen: Invalid value"),
        (mdep("bad10", {"workers": 65}), "spec.workers: Invalid value"),
        (mdep("bad14", {"model": {"uri": "pvc://m/a"}, "repository": {"uri": "pvc://m/b"}}),
         "set spec.model or spec.repository, not both"),
        (mdep("bad15", {"repository": {"uri": "https://host/models.tgz"}}), "repository.uri must start with pvc://CLAIM"),
        (mdep("bad16", {"repository": {"uri": "s3://models/a", "loadPolicy": "lazy"}}),
         "spec.repository.loadPolicy: Unsupported value"),
        (mdep("bad17", {"repository": {"uri": "s3://models/a", "maxLoadedBytes": "lots"}}),
         "repository.maxLoadedBytes must be a number of bytes or a quantity"),
        (mdep("bad18", {"repository": {"uri": "s3://models/a", "maxLoadedBytes": -5}}),
         "repository.maxLoadedBytes must be a number of bytes or a quantity"),
        (mdep("bad19", {"repository": {"uri": "s3://models/a"}, "workers": 2}), "spec.workers must be 1 with spec.repository"),
        (mdep("bad20", {"repository": {"uri": "s3://models/a"}, "mapping": {"request": {"a": "b"}}}),
         "spec.mapping applies to one model"),
        (mdep("bad21", {"repository": {"loadPolicy": "all"}}), "spec.repository.uri: Required value"),
    ]
    for body, words in cases:
        with pytest.raises(ApiException) as e:
            k.create(body)
        assert e.value.status == 422, e.value.body
        for w in (words,) if isinstance(words, str) else words:
            assert w in e.value.body, e.value.body


def test_defaults_are_filled_in(k: Cluster):
    k.create(mdep("demo"))
    spec = k.get("demo")["spec"]
    assert spec["protocol"] == "auto" and "model" not in spec and "repository" not in spec
    dep = wait_for("deployment", lambda: k.deployment("demo"))
    assert dep.spec.template.spec.containers[0].args == ["serve"]  # the bundled demo
    assert dep.spec.replicas == 1


def test_a_huggingface_model_is_accepted_and_configured(k: Cluster):
    k.create(mdep("llm", {
        "model": {"uri": "http://model-files/tiny-llama.tar.gz", "format": "huggingface"},
        "protocol": "openai",
        "generation": {"maxSequences": 4, "maxModelLen": 128},
    }))
    env = wait_for("env", lambda: k.env("llm"))
    assert env["MODELSERVER_FORMAT"] == "huggingface" and env["MODELSERVER_PROTOCOL"] == "openai"
    assert env["MODELSERVER_MAX_SEQUENCES"] == "4" and env["MODELSERVER_MAX_MODEL_LEN"] == "128"
    wait_for("url", lambda: k.get("llm").get("status", {}).get("url") == f"http://llm.{k.ns}.svc.cluster.local/openai/v1")
    k.delete("llm")


def test_a_repository_is_accepted_and_configured(k: Cluster):
    k.create(mdep("repo", {
        "repository": {"uri": "s3://models/customers", "loadPolicy": "on-demand", "maxLoadedBytes": "48Mi",
                       "storage": {"secretRef": {"name": "s3-creds"}}},
        "protocol": "v2",
    }))
    assert k.get("repo")["spec"]["repository"]["maxLoadedBytes"] == "48Mi"
    env = wait_for("env", lambda: k.env("repo"))
    assert env["MODELSERVER_MODEL_REPOSITORY"] == "s3://models/customers"
    assert env["MODELSERVER_LOAD_POLICY"] == "on-demand" and env["MODELSERVER_MAX_LOADED_BYTES"] == str(48 * 2**20)
    c = k.deployment("repo").spec.template.spec.containers[0]
    assert c.args == ["serve"] and c.env_from[0].secret_ref.name == "s3-creds"
    wait_for("url", lambda: k.get("repo").get("status", {}).get("url") == f"http://repo.{k.ns}.svc.cluster.local/v2/models")
    k.create(mdep("repo-bytes", {"repository": {"uri": "pvc://shared/models", "maxLoadedBytes": 50000000}}))
    assert wait_for("env", lambda: k.env("repo-bytes"))["MODELSERVER_MAX_LOADED_BYTES"] == "50000000"
    k.delete("repo")
    k.delete("repo-bytes")


def test_autoscaling_and_disruption_budget_come_and_go(k: Cluster):
    k.create(mdep("auto", {"autoscaling": {"maxReplicas": 4}, "disruptionBudget": {"maxUnavailable": 1}}))
    hpa = wait_for("hpa", lambda: k.autoscaling.read_namespaced_horizontal_pod_autoscaler("auto", k.ns))
    assert hpa.spec.max_replicas == 4 and hpa.spec.min_replicas == 1
    pdb = wait_for("pdb", lambda: k.policy.read_namespaced_pod_disruption_budget("auto", k.ns))
    assert pdb.spec.max_unavailable == 1
    ops = [
        {"op": "remove", "path": "/spec/autoscaling"},
        {"op": "remove", "path": "/spec/disruptionBudget"},
        {"op": "add", "path": "/spec/replicas", "value": 3},
    ]
    k.custom.patch_namespaced_custom_object(GROUP, VERSION, k.ns, PLURAL, "auto", ops, _content_type="application/json-patch+json")
    wait_for("replicas 3", lambda: k.deployment("auto").spec.replicas == 3)
    selector = "app.kubernetes.io/instance=auto"
    wait_for("hpa gone", lambda: not k.autoscaling.list_namespaced_horizontal_pod_autoscaler(k.ns, label_selector=selector).items)
    wait_for("pdb gone", lambda: not k.policy.list_namespaced_pod_disruption_budget(k.ns, label_selector=selector).items)


def test_a_name_clash_is_recorded_in_status_not_retried_hot(k: Cluster):
    k.core.create_namespaced_service(k.ns, {"metadata": {"name": "clash"}, "spec": {"ports": [{"port": 80}]}})
    k.create(mdep("clash"))
    ready = wait_for("InvalidSpec", lambda: (c := k.ready("clash")) and c["reason"] == "InvalidSpec" and c)
    assert "already exists and is not managed" in ready["message"]
    assert any("InvalidSpec" in e for e in k.events("clash"))


def test_operator_killed_mid_change_converges_without_duplicates(k: Cluster, operator: Operator):
    operator.kill()
    k.create(mdep("resume", {"replicas": 1}))
    k.patch("resume", {"replicas": 2, "batching": {"maxBatchSize": 4}})
    operator.start()
    wait_for("converged", lambda: k.deployment("resume").spec.replicas == 2 and k.env("resume")["MODELSERVER_MAX_BATCH_SIZE"] == "4")
    operator.kill()  # again, right after it acted
    k.patch("resume", {"replicas": 3})
    operator.start()
    wait_for("converged again", lambda: k.deployment("resume").spec.replicas == 3)
    deps = k.apps.list_namespaced_deployment(k.ns, label_selector="app.kubernetes.io/instance=resume").items
    svcs = k.core.list_namespaced_service(k.ns, label_selector="app.kubernetes.io/instance=resume").items
    assert len(deps) == 1 and len(svcs) == 1


def test_delete_removes_everything(k: Cluster):
    uid = k.get("iris")["metadata"]["uid"]
    k.delete("iris")
    wait_for("md gone", lambda: not _exists(lambda: k.get("iris")))
    wait_for("deployment collected", lambda: not _exists(lambda: k.deployment("iris")), timeout=60)
    wait_for("service collected", lambda: not _exists(lambda: k.service("iris")), timeout=60)
    rs = k.apps.list_namespaced_replica_set(k.ns, label_selector="app.kubernetes.io/instance=iris").items
    assert all(r.metadata.owner_references[0].uid != uid for r in rs) or wait_for(
        "replicasets collected",
        lambda: not k.apps.list_namespaced_replica_set(k.ns, label_selector="app.kubernetes.io/instance=iris").items,
        timeout=60,
    )


def _exists(read: Callable[[], Any]) -> bool:
    try:
        read()
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise
