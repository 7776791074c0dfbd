"""Manifest builders: names, labels, ownerReferences, the restricted pod profile, probes, HPA/PDB."""

from __future__ import annotations

import json
from typing import Any

import pytest
from modeldeploy_operator import builders
from modeldeploy_operator.errors import SpecError
from modeldeploy_operator.spec import parse

UID = "1234-uid"
IMAGE = "modeldeploy/modelserver:test"


def build(spec: dict[str, Any], name: str = "iris", ns: str = "ml") -> dict[str, Any]:
    s = parse(name, ns, spec)
    return {kind: body for kind, body in builders.children(s, UID, IMAGE)}


def container(dep: dict[str, Any]) -> dict[str, Any]:
    return dep["spec"]["template"]["spec"]["containers"][0]


def env(dep: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(dep)["env"]}


def test_names_labels_and_owner_references():
    out = build({})
    for kind in ("Deployment", "Service"):
        meta = out[kind]["metadata"]
        assert meta["name"] == "iris" and meta["namespace"] == "ml"
        assert meta["labels"]["app.kubernetes.io/name"] == "modelserver"
        assert meta["labels"]["app.kubernetes.io/instance"] == "iris"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "modeldeploy"
        (ref,) = meta["ownerReferences"]
        assert ref == {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "name": "iris",
                       "uid": UID, "controller": True, "blockOwnerDeletion": True}
    assert out["Service"]["spec"]["selector"] == out["Deployment"]["spec"]["selector"]["matchLabels"]
    assert out["HorizontalPodAutoscaler"] is None and out["PodDisruptionBudget"] is None


@pytest.mark.parametrize("name", ["a" * 63, "a" * 64, "model-" * 20])
def test_child_names_fit_in_63_characters(name):
    child = builders.child_name(name)
    assert len(child) <= 63 and child[0].isalpha() and not child.endswith("-")
    assert builders.child_name(name) == child  # stable
    if len(name) > 63:
        assert builders.child_name(name + "x") != child  # distinct


def test_pod_template_passes_the_restricted_profile():
    dep = build({})["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert not any("hostPath" in v for v in pod["volumes"])


def test_probes_prestop_and_rolling_update():
    dep = build({})["Deployment"]
    c = container(dep)
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["modelserver", "drain", "--wait", str(builders.PRESTOP_SECONDS)]
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > builders.PRESTOP_SECONDS + builders.DRAIN_SECONDS
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


@pytest.mark.parametrize(
    "uri,args,volume,init",
    [
        ("", ["serve"], None, False),
        ("pvc://models/iris/1", ["serve", "/models/iris/1"], {"claimName": "models", "readOnly": True}, False),
        ("https://host/iris.tar.gz", ["serve", "/models/iris"], None, True),
        ("s3://models/teams/iris", ["serve", "/models/iris"], None, True),
        ("file:///opt/models/iris", ["serve", "/opt/models/iris"], None, False),
    ],
)
def test_model_sources(uri, args, volume, init):
    dep = build({"model": {"uri": uri}})["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert container(dep)["args"] == args
    pvcs = [v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert pvcs == ([volume] if volume else [])
    if volume:
        mount = next(m for m in container(dep)["volumeMounts"] if m["name"] == "model")
        assert mount["readOnly"] is True
    assert ("initContainers" in pod) is init
    if init:
        (fetch,) = pod["initContainers"]
        assert fetch["args"] == ["fetch", uri, "/models/iris"] and fetch["image"] == IMAGE


def test_settings_become_server_environment():
    spec = {
        "model": {"name": "flowers", "signature": "classify"},
        "protocol": "v2",
        "batching": {"enabled": False, "maxBatchSize": 8, "maxLatencyMs": 2},
        "limits": {"maxBodyBytes": 1000, "timeoutSeconds": 3, "maxConnections": 500, "idleTimeoutSeconds": 20},
        "auth": {"apiKeySecretRef": {"name": "keys"}},
        "explainer": {"steps": 20, "maxPromptTokens": 64},
        "image": "registry.local/ms:1",
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        "workers": 2,
    }
    dep = build(spec)["Deployment"]
    e = env(dep)
    assert e["MODELSERVER_NAME"] == "flowers" and e["MODELSERVER_SIGNATURE"] == "classify"
    assert e["MODELSERVER_PROTOCOL"] == "v2" and e["MODELSERVER_HOST"] == "0.0.0.0"
    assert e["MODELSERVER_BATCHING"] == "false" and e["MODELSERVER_MAX_BATCH_SIZE"] == "8"
    assert e["MODELSERVER_MAX_BODY_BYTES"] == "1000" and e["MODELSERVER_TIMEOUT_SECONDS"] == "3"
    assert e["MODELSERVER_EXPLAIN_STEPS"] == "20" and e["MODELSERVER_API_KEY_FILE"].endswith("/keys")
    assert e["MODELSERVER_EXPLAIN_MAX_PROMPT_TOKENS"] == "64"
    assert e["MODELSERVER_MAX_CONNECTIONS"] == "500" and e["MODELSERVER_IDLE_TIMEOUT_SECONDS"] == "20"
    assert "MODELSERVER_EXPLAIN_MAX_PROMPT_TOKENS" not in env(build({})["Deployment"])
    assert e["MODELSERVER_WORKERS"] == "2" and env(build({})["Deployment"])["MODELSERVER_WORKERS"] == "1"
    assert container(dep)["image"] == "registry.local/ms:1"
    assert container(dep)["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}}
    secret = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "api-keys")
    assert secret["secret"] == {"secretName": "keys", "items": [{"key": "api-keys", "path": "keys"}]}


def test_format_defaults_to_tensorflow_without_generation_settings():
    assert parse("iris", "ml", {}).format == "tensorflow"
    e = env(build({})["Deployment"])
    assert e["MODELSERVER_FORMAT"] == "tensorflow"
    assert "MODELSERVER_MAX_SEQUENCES" not in e and "MODELSERVER_MAX_MODEL_LEN" not in e


def test_huggingface_model_with_generation_settings():
    spec = {
        "model": {"uri": "http://model-files/tiny-llama.tar.gz", "format": "huggingface"},
        "protocol": "openai",
        "generation": {"maxSequences": 4, "maxModelLen": 128},
    }
    s = parse("tiny-llm", "ml", spec)
    assert s.format == "huggingface" and s.generation == {"maxSequences": 4, "maxModelLen": 128}
    dep = build(spec, name="tiny-llm")["Deployment"]
    e = env(dep)
    assert e["MODELSERVER_FORMAT"] == "huggingface" and e["MODELSERVER_PROTOCOL"] == "openai"
    assert e["MODELSERVER_MAX_SEQUENCES"] == "4" and e["MODELSERVER_MAX_MODEL_LEN"] == "128"
    assert e["MODELSERVER_NAME"] == "tiny-llm"
    assert container(dep)["args"] == ["serve", "/models/tiny-llm"]
    (fetch,) = dep["spec"]["template"]["spec"]["initContainers"]
    assert fetch["args"] == ["fetch", "http://model-files/tiny-llama.tar.gz", "/models/tiny-llm"]
    assert builders.url(s) == "http://tiny-llm.ml.svc.cluster.local/openai/v1"


@pytest.mark.parametrize("generation,present,absent", [
    ({"maxSequences": 1}, {"MODELSERVER_MAX_SEQUENCES": "1"}, "MODELSERVER_MAX_MODEL_LEN"),
    ({"maxModelLen": 0}, {"MODELSERVER_MAX_MODEL_LEN": "0"}, "MODELSERVER_MAX_SEQUENCES"),
    ({}, {}, "MODELSERVER_MAX_SEQUENCES"),
])
def test_generation_settings_only_when_set(generation, present, absent):
    e = env(build({"model": {"format": "huggingface"}, "generation": generation})["Deployment"])
    assert {k: e[k] for k in present} == present and absent not in e


def test_a_slow_loading_model_is_waited_for_not_restarted():
    """Loading and warming a generative model takes long: only readiness waits for it.

    The server answers liveness as soon as it listens, before the model loads, so no startup
    probe or initial delay is needed; a startup probe on readiness would restart slow loads and
    hide a load failure's message behind a crash loop.
    """
    for fmt in ("tensorflow", "huggingface"):
        c = container(build({"model": {"format": fmt}})["Deployment"])
        assert "startupProbe" not in c
        assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        live = c["livenessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] >= 60


def test_replicas_hpa_and_pdb_only_when_asked():
    fixed = build({"replicas": 3})
    assert fixed["Deployment"]["spec"]["replicas"] == 3 and fixed["HorizontalPodAutoscaler"] is None
    auto = build({"autoscaling": {"maxReplicas": 5}, "disruptionBudget": {"minAvailable": 1}})
    assert "replicas" not in auto["Deployment"]["spec"]
    hpa = auto["HorizontalPodAutoscaler"]["spec"]
    assert hpa["minReplicas"] == 1 and hpa["maxReplicas"] == 5
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"}
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    pdb = auto["PodDisruptionBudget"]["spec"]
    assert pdb["minAvailable"] == 1 and pdb["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "iris"


@pytest.mark.parametrize(
    "spec,words",
    [
        ({"replicas": 2, "autoscaling": {"maxReplicas": 3}}, ["either spec.replicas or spec.autoscaling"]),
        ({"autoscaling": {"minReplicas": 4, "maxReplicas": 3}}, ["minReplicas"]),
        ({"disruptionBudget": {}}, ["exactly one"]),
        ({"model": {"uri": "gs://bucket/m"}}, ["pvc://", "http", "s3://"]),
        ({"model": {"format": "onnx"}}, ["onnx", "tensorflow", "huggingface"]),
        ({"generation": {"maxSequences": 8}}, ["spec.generation", "huggingface"]),
        ({"model": {"format": "huggingface"}, "generation": {"maxSequences": 0}}, ["maxSequences", "1 to 256"]),
        ({"model": {"format": "huggingface"}, "generation": {"maxSequences": 257}}, ["maxSequences", "1 to 256"]),
        ({"model": {"format": "huggingface"}, "generation": {"maxModelLen": -1}}, ["maxModelLen", "at least 0"]),
        ({"model": {"format": "huggingface"}, "generation": {"maxModelLen": "long"}}, ["maxModelLen", "integer"]),
        ({"model": {"format": "huggingface"}, "generation": 8}, ["spec.generation", "object"]),
        ({"protocol": "grpc"}, ["protocol", "grpc"]),
        ({"model": "iris"}, ["spec.model", "object"]),
    ],
)
def test_invalid_specs_say_what_to_fix(spec, words):
    with pytest.raises(SpecError) as e:
        parse("iris", "ml", spec)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize(
    "protocol,url",
    [
        ("v1", "http://iris.ml.svc.cluster.local/v1/models/iris:predict"),
        ("v2", "http://iris.ml.svc.cluster.local/v2/models/iris/infer"),
        ("openai", "http://iris.ml.svc.cluster.local/openai/v1"),
        ("auto", "http://iris.ml.svc.cluster.local/v1/models/iris:predict"),
    ],
)
def test_status_url(protocol, url):
    assert builders.url(parse("iris", "ml", {"protocol": protocol})) == url


def test_builders_are_deterministic():
    assert build({"replicas": 2}) == build({"replicas": 2})


def test_s3_credentials_reach_the_fetch_container_only():
    dep = build({"model": {"uri": "s3://models/iris", "storage": {"secretRef": {"name": "s3-creds"}}},
                 "serviceAccountName": "model-reader"})["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert "envFrom" not in container(dep) and not any(e["name"].startswith("AWS_") for e in container(dep)["env"])
    assert pod["serviceAccountName"] == "model-reader"
    assert "serviceAccountName" not in build({})["Deployment"]["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"model": {"uri": "s3://"}}, "s3://BUCKET"),
        ({"model": {"uri": "https://h/m.tgz", "storage": {"secretRef": {"name": "x"}}}}, "s3:// URIs only"),
        ({"explainer": {"maxPromptTokens": 0}}, "maxPromptTokens: expected an integer of at least 1, got 0"),
    ],
)
def test_specs_that_cannot_work_say_why(spec, words):
    with pytest.raises(SpecError, match=words):
        parse("iris", "ml", spec)


def test_a_mapping_becomes_the_server_s_settings():
    mapping = {"request": {"instances": "records[*].[a, b]"}, "response": {"scores": "predictions"}}
    e = env(build({"mapping": mapping})["Deployment"])
    assert json.loads(e["MODELSERVER_MAPPING_REQUEST"]) == mapping["request"]
    assert json.loads(e["MODELSERVER_MAPPING_RESPONSE"]) == mapping["response"]
    assert "MODELSERVER_MAPPING_EXAMPLE" not in e and "MODELSERVER_MAPPING_REQUEST" not in env(build({})["Deployment"])
    with pytest.raises(SpecError, match="spec.mapping.request: required"):
        parse("iris", "ml", {"mapping": {"response": {"a": "b"}}})
    with pytest.raises(SpecError, match="spec.mapping.request: expected an object"):
        parse("iris", "ml", {"mapping": {"request": "instances"}})


def test_protocol_auto_follows_the_model_format():
    spec = parse("llm", "ml", {"model": {"format": "huggingface"}})
    assert spec.protocol == "auto" and builders.url(spec) == "http://llm.ml.svc.cluster.local/openai/v1"
    assert env(build({})["Deployment"])["MODELSERVER_PROTOCOL"] == "auto"


def test_the_grpc_port_on_the_container_and_the_service_and_a_grpc_readiness_probe():
    out = build({})
    c = container(out["Deployment"])
    assert {"name": "grpc", "containerPort": 8081, "protocol": "TCP"} in c["ports"]
    assert env(out["Deployment"])["MODELSERVER_GRPC_PORT"] == "8081"
    assert {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"} in (
        out["Service"]["spec"]["ports"])
    assert builders.grpc_address(parse("iris", "ml", {})) == "iris.ml.svc.cluster.local:8081"
    probe = container(build({"readinessProbe": "grpc"})["Deployment"])["readinessProbe"]
    assert probe["grpc"] == {"port": 8081, "service": ""} and "httpGet" not in probe
    with pytest.raises(SpecError, match="readinessProbe: expected http or grpc"):
        build({"readinessProbe": "tcp"})


def test_a_repository_in_s3_is_read_by_the_server_with_the_credentials():
    out = build({"repository": {"uri": "s3://models/customers", "loadPolicy": "on-demand", "maxLoadedBytes": "64Mi",
                                "storage": {"secretRef": {"name": "s3-creds"}}}}, name="customers")
    dep = out["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert "initContainers" not in pod  # nothing fetched at start: each model when it loads
    c = container(dep)
    assert c["args"] == ["serve"] and c["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    e = env(dep)
    assert e["MODELSERVER_MODEL_REPOSITORY"] == "s3://models/customers"
    assert e["MODELSERVER_LOAD_POLICY"] == "on-demand" and e["MODELSERVER_MAX_LOADED_BYTES"] == str(64 * 2**20)
    assert e["MODELSERVER_FORMAT"] == "auto" and "MODELSERVER_NAME" not in e  # models are named by their directories
    s = parse("customers", "ml", {"repository": {"uri": "s3://models/customers"}, "protocol": "v2"})
    assert builders.url(s) == "http://customers.ml.svc.cluster.local/v2/models"
    assert builders.url(parse("c", "ml", {"repository": {"uri": "s3://mb/c"}})).endswith("/v1/models")


def test_a_repository_on_a_claim_is_mounted_read_only():
    dep = build({"repository": {"uri": "pvc://shared/teams/a", "maxLoadedBytes": 10_000_000}})["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert {"name": "model", "persistentVolumeClaim": {"claimName": "shared", "readOnly": True}} in pod["volumes"]
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in container(dep)["volumeMounts"]
    e = env(dep)
    assert e["MODELSERVER_MODEL_REPOSITORY"] == "/models/teams/a" and e["MODELSERVER_LOAD_POLICY"] == "all"
    assert e["MODELSERVER_MAX_LOADED_BYTES"] == "10000000" and "envFrom" not in container(dep)
    whole = env(build({"repository": {"uri": "pvc://shared", "maxLoadedBytes": "1.5Gi"}})["Deployment"])
    assert whole["MODELSERVER_MODEL_REPOSITORY"] == "/models" and whole["MODELSERVER_MAX_LOADED_BYTES"] == str(3 * 2**29)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"model": {"uri": "pvc://m/a"}, "repository": {"uri": "pvc://m/b"}}, "spec.model or spec.repository, not both"),
        ({"repository": {"uri": "https://h/models.tgz"}}, "spec.repository.uri .*pvc://CLAIM/PATH, s3://"),
        ({"repository": {"uri": "gs://b/p"}}, "spec.repository.uri 'gs://b/p'"),
        ({"repository": {"uri": "s3://mb/p", "loadPolicy": "lazy"}}, "loadPolicy: expected one of all, on-demand"),
        ({"repository": {"uri": "s3://mb/p", "maxLoadedBytes": "lots"}}, "maxLoadedBytes: expected bytes or a quantity"),
        ({"repository": {"uri": "s3://mb/p", "maxLoadedBytes": -1}}, "maxLoadedBytes: expected bytes"),
        ({"repository": {"uri": "s3://mb/p"}, "workers": 2}, "spec.workers must be 1 with spec.repository"),
        ({"repository": {"uri": "s3://mb/p"}, "mapping": {"request": {"a": "b"}}}, "spec.mapping applies to one model"),
        ({"repository": {"uri": "pvc://m/p", "storage": {"secretRef": {"name": "x"}}}},
         "spec.repository.storage applies to s3:// URIs only"),
    ],
)
def test_repository_specs_that_cannot_work_say_why(spec, words):
    with pytest.raises(SpecError, match=words):
        parse("repo", "ml", spec)
