"""Fixtures for end-to-end tests on the kind cluster made by ``make cluster``.

``kind_cluster`` yields a :class:`KindCluster` (context name, kubectl path, tool paths, API
client factory, image builder, port-forwarding to 127.0.0.1).  Tests are skipped when the cluster is not up
(run ``make cluster``); in CI that skip counts as a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
CLUSTER_NAME = os.environ.get("CLUSTER_NAME", "modeldeploy")


def _tool(name: str) -> str:
    local = TOOLS_BIN / name
    if os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} not installed: run `make cluster`")
    return found


@dataclass
class KindCluster:
    name: str
    context: str
    kubectl: str

    def kubectl_run(self, *args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.kubectl, "--context", self.context, *args],
            check=check, timeout=timeout, capture_output=True, text=True, **kw,
        )

    def tool(self, name: str) -> str:
        """Path of a tool installed by `make cluster` (kind, kubectl, helm)."""
        return _tool(name)

    def api_client(self):
        from kubernetes import config

        return config.new_client_from_config(context=self.context)

    def build_image(self, dockerfile: str | Path, tag: str, context: str | Path | None = None) -> str:
        """Build DOCKERFILE FROM the local base image and load it into the cluster."""
        cmd = [str(REPO_ROOT / "cluster" / "build-image.sh"), "-f", str(dockerfile), "-t", tag]
        cmd.append(str(context or Path(dockerfile).parent))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            raise RuntimeError(f"image build failed:\n{proc.stdout}\n{proc.stderr}")
        return tag

    @contextlib.contextmanager
    def port_forward(self, namespace: str, target: str, remote_port: int, timeout: float = 30):
        """Forward 127.0.0.1:<free port> to TARGET (svc/NAME, pod/NAME) and yield the local port."""
        proc = subprocess.Popen(
            [self.kubectl, "--context", self.context, "-n", namespace, "port-forward",
             "--address", "127.0.0.1", target, f":{remote_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            deadline = time.monotonic() + timeout
            port = None
            while time.monotonic() < deadline and port is None:
                line = proc.stdout.readline()
                if not line:
                    if proc.poll() is not None:
                        raise RuntimeError(f"kubectl port-forward exited with {proc.returncode}")
                    continue
                m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
                if m:
                    port = int(m.group(1))
            if port is None:
                raise TimeoutError("kubectl port-forward did not start")
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def kind_cluster() -> KindCluster:
    kind = _tool("kind")
    kubectl = _tool("kubectl")
    try:
        clusters = subprocess.run([kind, "get", "clusters"], capture_output=True, text=True, timeout=60).stdout.split()
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"kind does not answer ({e}): run `make cluster`")
    if CLUSTER_NAME not in clusters:
        pytest.skip(f"kind cluster {CLUSTER_NAME} is not running: run `make cluster`")
    cluster = KindCluster(name=CLUSTER_NAME, context=f"kind-{CLUSTER_NAME}", kubectl=kubectl)
    ready = cluster.kubectl_run("get", "--raw", "/readyz", check=False)
    if ready.returncode != 0:
        pytest.skip(f"kind cluster {CLUSTER_NAME} does not answer: {ready.stderr.strip()} (run `make cluster`)")
    return cluster


@pytest.fixture
def e2e_namespace(kind_cluster):
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kind_cluster.kubectl_run("create", "namespace", name)
    yield name
    kind_cluster.kubectl_run("delete", "namespace", name, "--wait=false", check=False)
