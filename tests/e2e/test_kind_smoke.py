"""Smoke tests of the kind cluster: an image built here runs in a pod and answers HTTP through a
Service (reached with kubectl port-forward on 127.0.0.1, and from another pod by its cluster DNS
name), and helm installs a chart."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from tests.incluster import CLIENT

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

    # Inside the cluster: another pod reaches the Service by name (cluster DNS + kube-proxy).
    url = f"http://smoke.{e2e_namespace}.svc.cluster.local/"
    kind_cluster.kubectl_run(
        "-n", e2e_namespace, "run", "client", f"--image={image}", "--image-pull-policy=Never",
        "--restart=Never", "--command", "--",
        "python3", "-c", CLIENT, url,
    )
    done = kind_cluster.kubectl_run(
        "-n", e2e_namespace, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/client", "--timeout=120s",
        check=False, timeout=150,
    )
    logs = kind_cluster.kubectl_run("-n", e2e_namespace, "logs", "client", check=False)
    assert done.returncode == 0, f"in-cluster client failed: {done.stderr}\n{logs.stdout}{logs.stderr}"
    assert logs.stdout.strip() == "modeldeploy smoke ok"


def test_helm_installs_a_chart(kind_cluster, e2e_namespace, tmp_path):
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("message: hello\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-cm}\n"
        "data: {message: {{ .Values.message | quote }}}\n"
    )
    helm = kind_cluster.tool("helm")
    subprocess.run(
        [helm, "--kube-context", kind_cluster.context, "-n", e2e_namespace, "install", "probe", str(chart),
         "--set", "message=from-helm", "--wait", "--timeout", "60s"],
        check=True, capture_output=True, text=True, timeout=120,
    )
    got = kind_cluster.kubectl_run("-n", e2e_namespace, "get", "configmap", "probe-cm", "-o", "jsonpath={.data.message}")
    assert got.stdout == "from-helm"
