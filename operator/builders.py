"""Pure functions from a ModelDeployment to the manifests of its children.

Everything here is deterministic: the same spec gives the same manifests, so server-side apply is
idempotent and a second reconcile changes nothing. The pod template passes the Pod Security
Standards "restricted" profile.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modeldeploy_operator import API_VERSION, KIND
from modeldeploy_operator.spec import MODEL_ROOT, Spec

from modelserver import contract
from modelserver.settings import env_name

PORT = contract.HTTP_PORT
SERVICE_PORT = 80
#: the gRPC port, in the pod and on the Service
GRPC_PORT = contract.GRPC_PORT
PRESTOP_SECONDS = 5
DRAIN_SECONDS = 30
RUN_AS = 10001
KEYS_DIR = "/var/run/modeldeploy/keys"
#: the init container that fetches http(s):// and s3:// models; its failures become FetchFailed
FETCH_CONTAINER = "fetch-model"
MAX_NAME = 63


def child_name(name: str, suffix: str = "") -> str:
    """A DNS-label name (at most 63 characters) for a child; long names get a stable hash."""
    full = f"{name}-{suffix}" if suffix else name
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: MAX_NAME - 9].rstrip('-')}-{digest}"


def selector_labels(spec: Spec) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modelserver", "app.kubernetes.io/instance": child_name(spec.name)}


def labels(spec: Spec) -> dict[str, str]:
    return {
        **selector_labels(spec),
        "app.kubernetes.io/managed-by": "modeldeploy",
        "app.kubernetes.io/component": "model-server",
        "modeldeploy.dev/model": child_name(spec.model_name),
    }


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(spec: Spec, uid: str, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or child_name(spec.name),
        "namespace": spec.namespace,
        "labels": labels(spec),
        "ownerReferences": [owner_reference(spec.name, uid)],
    }


def server_env(spec: Spec) -> list[dict[str, str]]:
    """The model server's settings for this spec, as its environment variables.

    Keys are the server's setting names; ``env_name`` turns each into its variable
    (``MODELSERVER_MAX_BODY_BYTES``) from the server's own settings declaration, and refuses a
    name the server does not declare.
    """
    b = spec.batching
    # a repository's models are named by their directories
    values: dict[str, Any] = {} if spec.repository is not None else {"name": spec.model_name}
    values |= {
        "format": spec.format,
        "host": "0.0.0.0",
        "port": PORT,
        "grpc_port": GRPC_PORT,
        "protocol": spec.protocol,
        "signature": spec.signature,
        "workers": spec.workers,
        "batching": str(b.get("enabled", True)).lower(),
        "max_batch_size": b.get("maxBatchSize", 32),
        "max_latency_ms": b.get("maxLatencyMs", 0),
        "explain_steps": spec.explain_steps,
        "drain_seconds": DRAIN_SECONDS,
        "log_format": "json",
    }
    if spec.repository is not None:
        values["model_repository"] = spec.server_path()
        values["load_policy"] = spec.repository.load_policy
        values["max_loaded_bytes"] = spec.repository.max_loaded_bytes
    limit_names = {
        "maxBodyBytes": "max_body_bytes",
        "timeoutSeconds": "timeout_seconds",
        "maxInstances": "max_instances",
        "maxConcurrentRequests": "max_concurrent_requests",
        "maxConnections": "max_connections",
        "maxHeaderBytes": "max_header_bytes",
        "idleTimeoutSeconds": "idle_timeout_seconds",
        "bodyTimeoutSeconds": "body_timeout_seconds",
    }
    for key, setting in limit_names.items():
        if key in spec.limits:
            values[setting] = spec.limits[key]
    if spec.explain_max_prompt_tokens is not None:
        values["explain_max_prompt_tokens"] = spec.explain_max_prompt_tokens
    generation_names = {"maxSequences": "max_sequences", "maxModelLen": "max_model_len"}
    for key, setting in generation_names.items():
        if key in spec.generation:
            values[setting] = spec.generation[key]
    for key, template in spec.mapping.items():  # request, response, example
        values[f"mapping_{key}"] = json.dumps(template, sort_keys=True, separators=(",", ":"))
    if spec.api_key_secret:
        values["api_key_file"] = f"{KEYS_DIR}/keys"
    return [{"name": env_name(k), "value": str(v)} for k, v in values.items()]


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_template(spec: Spec, image: str) -> dict[str, Any]:
    src = spec.source
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    init: list[dict[str, Any]] = []
    if src.kind == "pvc":
        volumes.append({"name": "model", "persistentVolumeClaim": {"claimName": src.claim, "readOnly": True}})
        mounts.append({"name": "model", "mountPath": MODEL_ROOT, "readOnly": True})
    elif spec.fetched:
        volumes.append({"name": "model", "emptyDir": {}})
        mounts.append({"name": "model", "mountPath": MODEL_ROOT})
        fetch: dict[str, Any] = {
            "name": FETCH_CONTAINER,
            "image": image,
            "args": ["fetch", src.uri, spec.server_path()],
            "volumeMounts": [{"name": "model", "mountPath": MODEL_ROOT}, {"name": "tmp", "mountPath": "/tmp"}],
            "securityContext": _container_security(),
            "resources": spec.resources,
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
        if spec.storage_secret:  # the credentials reach the fetch container only
            fetch["envFrom"] = [{"secretRef": {"name": spec.storage_secret}}]
        init.append(fetch)
    if spec.api_key_secret:
        secret, key = spec.api_key_secret
        volumes.append({"name": "api-keys", "secret": {"secretName": secret, "items": [{"key": key, "path": "keys"}]}})
        mounts.append({"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": True})
    path = None if spec.repository is not None else spec.server_path()  # a repository's is a setting
    container: dict[str, Any] = {
        "name": "modelserver",
        "image": image,
        "args": ["serve"] + ([path] if path else []),
        "env": server_env(spec),
        "ports": [
            {"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            **({"grpc": {"port": GRPC_PORT, "service": ""}} if spec.readiness_probe == "grpc" else
               {"httpGet": {"path": contract.READY_PATH, "port": "http"}}),
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": contract.LIVE_PATH, "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        # Drain first (readiness 503, connections closed after each answer), then SIGTERM.
        "lifecycle": {"preStop": {"exec": {"command": ["modelserver", "drain", "--wait", str(PRESTOP_SECONDS)]}}},
        "resources": spec.resources,
        "securityContext": _container_security(),
        "volumeMounts": mounts,
        # the last log lines become the termination message the operator reports
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.storage_secret and not spec.fetched:  # a repository in S3: the server reads each model as it loads
        container["envFrom"] = [{"secretRef": {"name": spec.storage_secret}}]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": PRESTOP_SECONDS + DRAIN_SECONDS + 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if init:
        pod_spec["initContainers"] = init
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    return {"metadata": {"labels": labels(spec)}, "spec": pod_spec}


def deployment(spec: Spec, uid: str, image: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, uid),
        "spec": {
            "selector": {"matchLabels": selector_labels(spec)},
            "revisionHistoryLimit": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": pod_template(spec, spec.image or image),
        },
    }
    if spec.autoscaling is None:
        body["spec"]["replicas"] = spec.replicas  # with autoscaling the HPA owns the count
    return body


def service(spec: Spec, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, uid),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(spec),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
            ],
        },
    }


def hpa(spec: Spec, uid: str) -> dict[str, Any] | None:
    if spec.autoscaling is None:
        return None
    a = spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(spec, uid),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": child_name(spec.name)},
            "minReplicas": a["minReplicas"],
            "maxReplicas": a["maxReplicas"],
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": a["targetCPUUtilizationPercentage"]},
                    },
                }
            ],
        },
    }


def pdb(spec: Spec, uid: str) -> dict[str, Any] | None:
    if spec.disruption_budget is None:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(spec, uid),
        "spec": {"selector": {"matchLabels": selector_labels(spec)}, **spec.disruption_budget},
    }


def children(spec: Spec, uid: str, image: str) -> list[tuple[str, dict[str, Any] | None]]:
    """Every child kind with its desired manifest; None means the kind must not exist."""
    return [
        ("Deployment", deployment(spec, uid, image)),
        ("Service", service(spec, uid)),
        ("HorizontalPodAutoscaler", hpa(spec, uid)),
        ("PodDisruptionBudget", pdb(spec, uid)),
    ]


def url(spec: Spec) -> str:
    """The in-cluster inference URL in the spec's protocol (``auto``: openai for huggingface models);
    for a repository the base its models' paths go below (``.../v1/models``)."""
    base = f"http://{child_name(spec.name)}.{spec.namespace}.svc.cluster.local"
    protocol = spec.protocol
    if protocol == "auto":
        protocol = "openai" if spec.format == "huggingface" else "v1"
    if spec.repository is not None:  # each model of the repository below it, by name
        return f"{base}/openai/v1" if protocol == "openai" else f"{base}/{protocol}/models"
    if protocol == "v2":
        return f"{base}/v2/models/{spec.model_name}/infer"
    if protocol == "openai":
        return f"{base}/openai/v1"
    return f"{base}/v1/models/{spec.model_name}:predict"


def grpc_address(spec: Spec) -> str:
    """The in-cluster address of the gRPC server (Open Inference Protocol, health, reflection)."""
    return f"{child_name(spec.name)}.{spec.namespace}.svc.cluster.local:{GRPC_PORT}"


def selector_string(spec: Spec) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(spec).items())
