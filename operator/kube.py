"""The operator's few calls to the API server: get, server-side apply, delete, list pods,
patch status, and GET through the pod proxy.

Credentials come from the in-cluster service account or the kubeconfig (via the ``kubernetes``
package's loaders); the calls are plain HTTPS with ``requests``, blocking, so handlers run them in
threads. Failures are raised as the operator's own errors (see ``errors.classify_api_error``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from modeldeploy_operator import API_VERSION, FIELD_MANAGER, PLURAL
from modeldeploy_operator.errors import classify_api_error

TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
TIMEOUT = 15.0

#: child kinds: (API prefix, resource plural)
KINDS = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "Pod": ("/api/v1", "pods"),
    "ModelDeployment": (f"/apis/{API_VERSION}", PLURAL),
}


@dataclass
class Connection:
    host: str
    headers: dict[str, str]
    verify: str | bool
    cert: tuple[str, str] | None
    token_file: str | None = None


def connect() -> Connection:
    """Credentials for the cluster: the pod's service account in a cluster, else the kubeconfig."""
    from kubernetes import client, config  # only the credential loaders are used

    cfg = client.Configuration()
    token_file = None
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)
        token_file = TOKEN_FILE
    else:
        config.load_kube_config(client_configuration=cfg)
    auth: dict[str, dict[str, Any]] = cfg.auth_settings()  # type: ignore[assignment]
    headers = {s["key"]: s["value"] for s in auth.values() if s.get("in") == "header" and s.get("value")}
    cert = (cfg.cert_file, cfg.key_file) if cfg.cert_file and cfg.key_file else None
    verify: str | bool = cfg.ssl_ca_cert or bool(cfg.verify_ssl)
    return Connection(cfg.host.rstrip("/"), headers, verify, cert, token_file)


def path(kind: str, namespace: str, name: str | None = None, sub: str = "") -> str:
    prefix, plural = KINDS[kind]
    out = f"{prefix}/namespaces/{namespace}/{plural}"
    if name:
        out += f"/{name}"
    return out + (f"/{sub}" if sub else "")


class Kube:
    """Blocking API calls; one ``requests`` session per thread."""

    def __init__(self, conn: Connection | None = None) -> None:
        self.conn = conn or connect()
        self._local = threading.local()

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def request(
        self, method: str, url_path: str, *, ok404: bool = False, check: bool = True, **kwargs: Any
    ) -> requests.Response | None:
        headers = {**self.conn.headers, **kwargs.pop("headers", {})}
        if self.conn.token_file:  # projected tokens rotate: read it each time
            with open(self.conn.token_file, encoding="utf-8") as f:
                headers["authorization"] = "Bearer " + f.read().strip()
        try:
            # verify and cert per request: REQUESTS_CA_BUNDLE in the environment would override a session's
            r = self._session().request(
                method, self.conn.host + url_path, headers=headers, timeout=TIMEOUT,
                verify=self.conn.verify, cert=self.conn.cert, **kwargs,
            )
        except requests.RequestException as e:
            raise classify_api_error(None, str(e)) from e
        if r.status_code == 404 and ok404:
            return None
        if r.status_code >= 400 and check:
            raise classify_api_error(r.status_code, _reason(r))
        return r

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        r = self.request("GET", path(kind, namespace, name), ok404=True)
        return None if r is None else r.json()

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with the operator's field manager, taking ownership of its fields."""
        meta = obj["metadata"]
        r = self.request(
            "PATCH",
            path(obj["kind"], meta["namespace"], meta["name"]),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            headers={"Content-Type": "application/apply-patch+yaml"},
            json=obj,
        )
        assert r is not None
        return r.json()

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        return self.request("DELETE", path(kind, namespace, name), ok404=True) is not None

    def list_objects(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        r = self.request("GET", path(kind, namespace), params={"labelSelector": selector})
        assert r is not None
        return list(r.json().get("items", []))

    def list_all(self, kind: str, namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
        """Every object of a kind in the given namespaces (all namespaces when none are given)."""
        prefix, plural = KINDS[kind]
        paths = [f"{prefix}/namespaces/{ns}/{plural}" for ns in namespaces] or [f"{prefix}/{plural}"]
        items: list[dict[str, Any]] = []
        for p in paths:
            r = self.request("GET", p)
            assert r is not None
            body = r.json()
            for item in body.get("items", []):  # lists omit each item's apiVersion and kind
                item.setdefault("apiVersion", body.get("apiVersion", "").removesuffix("List"))
                item.setdefault("kind", kind)
            items.extend(body.get("items", []))
        return items

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.request(
            "PATCH",
            path("ModelDeployment", namespace, name, "status"),
            ok404=True,
            headers={"Content-Type": "application/merge-patch+json"},
            json={"status": status},
        )

    def pod_get(self, namespace: str, pod: str, port: int, url_path: str) -> tuple[int, str]:
        """GET on a pod's port through the API server's proxy: (status, body); (0, reason) if unreachable."""
        full = path("Pod", namespace, f"{quote(pod)}:{port}", "proxy") + url_path
        try:
            r = self.request("GET", full, check=False)
        except Exception as e:  # noqa: BLE001 - a pod that does not answer is an observation, not a failure
            return 0, str(e)
        assert r is not None
        return r.status_code, r.text


def _reason(r: requests.Response) -> str:
    try:
        body = r.json()
        return str(body.get("message") or body)
    except ValueError:
        return r.text[:300]
