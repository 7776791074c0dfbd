"""A ModelDeployment's spec as typed values, with the defaults and the checks the schema cannot make.

The CRD's OpenAPI schema and CEL rules refuse most bad specs at the API server; ``parse`` repeats
the essentials (a spec may predate a schema change) and raises ``SpecError`` saying what to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from modeldeploy_operator.errors import SpecError

from modelserver import contract

PROTOCOLS = contract.PROTOCOLS
FORMATS = contract.FORMATS
MODEL_ROOT = "/models"
_S3 = re.compile(r"^s3://[a-z0-9][-a-z0-9.]*[a-z0-9](/.*)?$")
_PVC = re.compile(r"^pvc://(?P<claim>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)(?P<path>/.*)?$")


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from and where the server finds it."""

    kind: str  # "demo" | "pvc" | "http" | "s3" | "file"
    uri: str = ""
    claim: str = ""
    sub_path: str = ""

    def server_path(self, model_name: str) -> str | None:
        """The path given to ``modelserver serve`` (None: the bundled demo)."""
        if self.kind == "demo":
            return None
        if self.kind == "file":
            return self.uri[len("file://") :]
        if self.kind == "pvc":
            return f"{MODEL_ROOT}/{self.sub_path.strip('/')}".rstrip("/")
        return f"{MODEL_ROOT}/{model_name}"


def parse_uri(uri: str) -> ModelSource:
    if not uri:
        return ModelSource("demo")
    m = _PVC.match(uri)
    if m:
        return ModelSource("pvc", uri, claim=m.group("claim"), sub_path=m.group("path") or "")
    if uri.startswith(("http://", "https://")) and len(uri) > len("https://"):
        return ModelSource("http", uri)
    if _S3.match(uri):
        return ModelSource("s3", uri)
    if uri.startswith("file:///"):
        return ModelSource("file", uri)
    raise SpecError(f"spec.model.uri {uri!r}: expected pvc://CLAIM/PATH, http(s)://..., s3://BUCKET/PREFIX or file:///PATH")


@dataclass(frozen=True)
class Spec:
    name: str
    namespace: str
    model_name: str
    source: ModelSource
    signature: str = "serving_default"
    format: str = "tensorflow"
    protocol: str = "auto"
    #: ``http`` or ``grpc``: how the kubelet checks readiness
    readiness_probe: str = "http"
    image: str = ""
    replicas: int = 1
    #: server processes per pod (``--workers``)
    workers: int = 1
    autoscaling: dict[str, int] | None = None
    disruption_budget: dict[str, Any] | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    batching: dict[str, Any] = field(default_factory=dict)
    explain_steps: int = 50
    #: generative models: ``explainer.maxPromptTokens`` (None: the server's default)
    explain_max_prompt_tokens: int | None = None
    api_key_secret: tuple[str, str] | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    #: generative models: ``maxSequences`` and ``maxModelLen`` as given (absent: the server's defaults)
    generation: dict[str, int] = field(default_factory=dict)
    #: the Secret whose keys (AWS_*) the fetch container gets as its environment
    storage_secret: str = ""
    #: the pods' service account (IRSA, workload identity); empty: the namespace's default
    service_account: str = ""
    #: custom mapping templates: ``request``, and optionally ``response`` and ``example``
    mapping: dict[str, Any] = field(default_factory=dict)

    @property
    def fetched(self) -> bool:
        """True when an init container fetches the model (http(s)://, s3://)."""
        return self.source.kind in ("http", "s3")


def _obj(spec: dict[str, Any], key: str) -> dict[str, Any]:
    value = spec.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(f"spec.{key}: expected an object, got {type(value).__name__}")
    return value


def _generation(gen: dict[str, Any]) -> dict[str, int]:
    """``spec.generation`` checked against the schema's bounds (only the keys given)."""
    bounds = {"maxSequences": (1, 256), "maxModelLen": (0, None)}
    out: dict[str, int] = {}
    for key, (low, high) in bounds.items():
        if key not in gen:
            continue
        value = gen[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            span = f"{low} to {high}" if high is not None else f"at least {low}"
            raise SpecError(f"spec.generation.{key}: expected an integer {span}, got {value!r}")
        out[key] = value
    return out


def _readiness_probe(spec: dict[str, Any]) -> str:
    """``spec.readinessProbe``, checked as the schema does."""
    value = spec.get("readinessProbe", "http")
    if value not in ("http", "grpc"):
        raise SpecError(f"spec.readinessProbe: expected http or grpc, got {value!r}")
    return str(value)


def _prompt_cap(explainer: dict[str, Any]) -> int | None:
    """``spec.explainer.maxPromptTokens``, checked as the schema does."""
    value = explainer.get("maxPromptTokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"spec.explainer.maxPromptTokens: expected an integer of at least 1, got {value!r}")
    return value


def parse(name: str, namespace: str, spec: dict[str, Any]) -> Spec:
    """Typed spec with defaults; ``SpecError`` says what to fix."""
    model = _obj(spec, "model")
    protocol = spec.get("protocol", "auto")
    if protocol not in PROTOCOLS:
        raise SpecError(f"spec.protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    fmt = model.get("format", "tensorflow")
    if fmt not in FORMATS:
        raise SpecError(
            f"spec.model.format {fmt!r} is not served; use tensorflow (a SavedModel), keras (a .keras or .h5 "
            "file), python (a directory with model.py), huggingface (a Hugging Face model directory) or auto"
        )
    generation = _generation(_obj(spec, "generation"))
    if generation and fmt != "huggingface":
        raise SpecError("spec.generation applies to generative models only: set spec.model.format to huggingface")
    autoscaling = spec.get("autoscaling")
    if autoscaling is not None and "replicas" in spec:
        raise SpecError("set either spec.replicas or spec.autoscaling, not both")
    if autoscaling is not None:
        autoscaling = {
            "minReplicas": int(autoscaling.get("minReplicas", 1)),
            "maxReplicas": int(autoscaling["maxReplicas"]),
            "targetCPUUtilizationPercentage": int(autoscaling.get("targetCPUUtilizationPercentage", 80)),
        }
        if autoscaling["minReplicas"] > autoscaling["maxReplicas"]:
            raise SpecError("spec.autoscaling.minReplicas must not exceed maxReplicas")
    budget = spec.get("disruptionBudget")
    if budget is not None and ("minAvailable" in budget) == ("maxUnavailable" in budget):
        raise SpecError("spec.disruptionBudget needs exactly one of minAvailable or maxUnavailable")
    storage = _obj(model, "storage").get("secretRef") or {}
    if storage and not isinstance(storage.get("name"), str):
        raise SpecError("spec.model.storage.secretRef.name: expected the name of a Secret")
    source = parse_uri(model.get("uri", ""))
    if storage and source.kind != "s3":
        raise SpecError("spec.model.storage applies to s3:// URIs only")
    mapping = _obj(spec, "mapping")
    for key, value in mapping.items():
        if key not in ("request", "response", "example") or not isinstance(value, dict):
            raise SpecError(f"spec.mapping.{key}: expected an object template (request, response or example)")
    if mapping and "request" not in mapping:
        raise SpecError("spec.mapping.request: required when spec.mapping is set")
    auth = _obj(spec, "auth").get("apiKeySecretRef")
    secret = (auth["name"], auth.get("key", "api-keys")) if auth else None
    return Spec(
        name=name,
        namespace=namespace,
        model_name=model.get("name") or name,
        source=source,
        signature=model.get("signature", "serving_default"),
        format=fmt,
        protocol=protocol,
        readiness_probe=_readiness_probe(spec),
        image=spec.get("image", ""),
        replicas=int(spec.get("replicas", 1)),
        workers=int(spec.get("workers", 1)),
        autoscaling=autoscaling,
        disruption_budget=dict(budget) if budget else None,
        resources=_obj(spec, "resources"),
        batching=_obj(spec, "batching"),
        explain_steps=int(_obj(spec, "explainer").get("steps", 50)),
        explain_max_prompt_tokens=_prompt_cap(_obj(spec, "explainer")),
        api_key_secret=secret,
        limits=_obj(spec, "limits"),
        generation=generation,
        storage_secret=storage.get("name", "") if storage else "",
        service_account=str(spec.get("serviceAccountName") or ""),
        mapping=mapping,
    )
