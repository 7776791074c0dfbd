"""Smoke test of the kind cluster: an image built here runs in a pod and answers HTTP through a
Service, reached with kubectl port-forward on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: smoke}
spec:
  replicas: 1
  selector: {matchLabels: {app: smoke}}
  template:
    metadata: {labels: {app: smoke}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: web
          image: %(image)s
          imagePullPolicy: Never
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /, port: 8080}
            periodSeconds: 1
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
---
apiVersion: v1
kind: Service
metadata: {name: smoke}
spec:
  selector: {app: smoke}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_pod_from_local_image_answers_through_service(kind_cluster, e2e_namespace):
    image = kind_cluster.build_image(HERE / "Dockerfile.smoke", "modeldeploy/smoke:e2e", HERE)
    kind_cluster.kubectl_run("-n", e2e_namespace, "apply", "-f", "-", input=MANIFEST % {"image": image})
    rollout = kind_cluster.kubectl_run(
        "-n", e2e_namespace, "rollout", "status", "deployment/smoke", "--timeout=180s", check=False, timeout=200
    )
    if rollout.returncode != 0:
        pods = kind_cluster.kubectl_run("-n", e2e_namespace, "describe", "pods", check=False).stdout
        raise AssertionError(f"deployment did not become ready: {rollout.stderr}\n{pods}")

    with kind_cluster.port_forward(e2e_namespace, "svc/smoke", 80) as port:
        deadline = time.monotonic() + 30
        while True:
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    assert resp.status_code == 200
    assert resp.text.strip() == "modeldeploy smoke ok"
