"""A ModelDeployment's spec as typed values, with the defaults and the checks the schema cannot make.

The CRD's OpenAPI schema and CEL rules refuse most bad specs at the API server; ``parse`` repeats
the essentials (a spec may predate a schema change) and raises ``SpecError`` saying what to fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from kubernetes.utils.quantity import parse_quantity
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


def parse_uri(uri: str, where: str = "spec.model.uri") -> ModelSource:
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
    raise SpecError(f"{where} {uri!r}: expected pvc://CLAIM/PATH, http(s)://..., s3://BUCKET/PREFIX or file:///PATH")


@dataclass(frozen=True)
class Repository:
    """``spec.repository``: many models served by one pod, loaded as the policy says, within a budget."""

    #: ``all`` or ``on-demand`` (``contract.LOAD_POLICIES``)
    load_policy: str = "all"
    #: bytes the loaded models may take (0: no limit)
    max_loaded_bytes: int = 0


def _max_loaded_bytes(value: Any) -> int:
    """``spec.repository.maxLoadedBytes``: an integer of bytes or a quantity (``512Mi``, ``2G``)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SpecError(f"spec.repository.maxLoadedBytes: expected bytes or a quantity such as 512Mi, got {value!r}")
    try:
        amount = parse_quantity(value)
    except ValueError:
        amount = None
    if amount is None or amount < 0:
        raise SpecError(f"spec.repository.maxLoadedBytes: expected bytes or a quantity such as 512Mi, got {value!r}")
    return math.ceil(amount)


def _repository(spec: dict[str, Any]) -> tuple[Repository, ModelSource]:
    """``spec.repository`` checked as the schema does: its policy, its budget and where it is."""
    repo = _obj(spec, "repository")
    if "model" in spec:
        raise SpecError("set spec.model or spec.repository, not both")
    policy = repo.get("loadPolicy", "all")
    if policy not in contract.LOAD_POLICIES:
        raise SpecError(f"spec.repository.loadPolicy: expected one of {', '.join(contract.LOAD_POLICIES)}, got {policy!r}")
    source = parse_uri(str(repo.get("uri") or ""), "spec.repository.uri")
    if source.kind not in ("pvc", "s3", "file"):
        raise SpecError(f"spec.repository.uri {repo.get('uri')!r}: expected pvc://CLAIM/PATH, s3://BUCKET/PREFIX or file:///PATH")
    for key in ("mapping", "generation"):
        if key in spec:
            raise SpecError(f"spec.{key} applies to one model: not with spec.repository")
    if int(spec.get("workers", 1)) != 1:
        raise SpecError("spec.workers must be 1 with spec.repository: each process would load its own copies "
                        "against its own budget; use replicas")
    return Repository(policy, _max_loaded_bytes(repo.get("maxLoadedBytes"))), source


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
    #: ``spec.repository``: a model repository instead of one model (``source`` says where it is)
    repository: Repository | None = None

    @property
    def fetched(self) -> bool:
        """True when an init container fetches the model (http(s)://, s3://); a repository in S3 is
        read by the server itself, each model when it loads."""
        return self.repository is None and self.source.kind in ("http", "s3")

    def server_path(self) -> str | None:
        """The model path, or the repository's path or s3:// prefix, given to ``modelserver serve``."""
        if self.repository is not None and self.source.kind == "s3":
            return self.source.uri
        return self.source.server_path(self.model_name)


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
    repository: Repository | None = None
    if "repository" in spec:
        repository, repo_source = _repository(spec)
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
    where = "repository" if repository is not None else "model"
    storage = _obj(_obj(spec, where), "storage").get("secretRef") or {}
    if storage and not isinstance(storage.get("name"), str):
        raise SpecError(f"spec.{where}.storage.secretRef.name: expected the name of a Secret")
    source = repo_source if repository is not None else parse_uri(model.get("uri", ""))
    if storage and source.kind != "s3":
        raise SpecError(f"spec.{where}.storage applies to s3:// URIs only")
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
        format="auto" if repository is not None else fmt,
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
        repository=repository,
    )
