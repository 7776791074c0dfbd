"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on 127.0.0.1.

The binaries are the ones built by ``cluster/build-k8s.sh`` (``make apiserver-bins``); they are
looked up in ``$MODELDEPLOY_K8S_BIN`` or in the version-keyed cache directory.  Everything runs
as plain processes in a temporary directory: no containers, no kubelet, so Pods are never run,
but the API server is the real one (CRDs, OpenAPI/CEL validation, admission, status subresource)
and the controller manager makes ReplicaSets for Deployments and garbage-collects owned objects.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LIB_SH = REPO_ROOT / "cluster" / "lib.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")


def _pinned(name: str, default: str) -> str:
    """Read a pinned version (``NAME="${NAME:-vX}"``) from cluster/lib.sh."""
    try:
        text = LIB_SH.read_text()
    except OSError:
        return default
    n = re.escape(name)
    m = re.search(rf'^{n}="\$\{{{n}:-([^}}]+)\}}"', text, re.M)
    return m.group(1) if m else default


def cache_dir() -> Path:
    return Path(os.environ.get("MODELDEPLOY_CACHE") or Path.home() / ".cache" / "modeldeploy")


def bin_dir() -> Path:
    explicit = os.environ.get("MODELDEPLOY_K8S_BIN")
    if explicit:
        return Path(explicit)
    version = os.environ.get("K8S_VERSION") or _pinned("K8S_VERSION", "v1.34.4")
    return cache_dir() / "k8s" / version / "bin"


def missing_binaries() -> list[str]:
    d = bin_dir()
    return [b for b in BINARIES if not os.access(d / b, os.X_OK)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver + kube-controller-manager; use start()/stop()."""

    workdir: Path
    bins: Path = field(default_factory=bin_dir)
    url: str = ""
    token: str = ""
    kubeconfig: Path = field(init=False)
    ca_file: Path = field(init=False)
    _procs: list = field(default_factory=list)
    _logs: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.ca_file = self.workdir / "certs" / "apiserver.crt"

    # -- process handling ------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            [str(self.bins / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._procs.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.workdir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _check_alive(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def _wait(self, what: str, probe, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if probe():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready after {timeout:.0f}s")

    def _get(self, path: str, token: bool = True) -> int:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        req = urllib.request.Request(self.url + path)
        if token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
        except (OSError, ssl.SSLError):
            return 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> ControlPlane:
        missing = missing_binaries() if "MODELDEPLOY_K8S_BIN" not in os.environ else [
            b for b in BINARIES if not os.access(self.bins / b, os.X_OK)
        ]
        if missing:
            raise FileNotFoundError(f"missing {missing} in {self.bins} (run: make apiserver-bins)")
        certs = self.workdir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        # Service-account signing key pair.
        sa_key, sa_pub = certs / "sa.key", certs / "sa.pub"
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)], check=True, capture_output=True)
        # Static admin token (group system:masters bypasses RBAC).
        self.token = secrets.token_hex(16)
        tokens = certs / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin,"system:masters"\n')

        etcd_port, etcd_peer, api_port = _free_port(), _free_port(), _free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [
            "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])

        self.url = f"https://127.0.0.1:{api_port}"
        self._spawn("kube-apiserver", [
            "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(api_port),
            "--cert-dir", str(certs),
            "--token-auth-file", str(tokens),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(sa_pub),
            "--service-account-signing-key-file", str(sa_key),
            "--service-cluster-ip-range", "10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins", "ServiceAccount",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ])
        # The serving certificate appears in cert-dir once the API server starts.
        self._wait("kube-apiserver certificate", self.ca_file.exists, timeout)
        self._wait("kube-apiserver", lambda: self._get("/readyz") == 200, timeout)

        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            "clusters:\n- name: local\n  cluster:\n"
            f"    server: {self.url}\n    certificate-authority: {self.ca_file}\n"
            "users:\n- name: admin\n  user:\n"
            f"    token: {self.token}\n"
            "contexts:\n- name: local\n  context: {cluster: local, user: admin, namespace: default}\n"
            "current-context: local\n"
        )
        self._spawn("kube-controller-manager", [
            "--kubeconfig", str(self.kubeconfig),
            "--authentication-kubeconfig", str(self.kubeconfig),
            "--authorization-kubeconfig", str(self.kubeconfig),
            "--bind-address", "127.0.0.1", "--secure-port", "0",
            "--leader-elect=false",
            "--controllers", "*",
            "--service-account-private-key-file", str(sa_key),
            "--root-ca-file", str(self.ca_file),
            "--use-service-account-credentials=false",
            "--concurrent-deployment-syncs", "5",
            "--profiling=false",
            "--v=1",
        ])
        # The controller manager is up once it has created the default ServiceAccount.
        self._wait(
            "kube-controller-manager",
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default") == 200,
            timeout,
        )
        return self

    def stop(self) -> None:
        for _name, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()


def start_control_plane(workdir: str | os.PathLike | None = None, timeout: float = 60.0) -> ControlPlane:
    """Start a control plane in WORKDIR (a new temporary directory by default)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="modeldeploy-apiserver-"))
    cp = ControlPlane(workdir=workdir)
    try:
        return cp.start(timeout=timeout)
    except BaseException:
        cp.stop()
        raise


def remove(cp: ControlPlane) -> None:
    cp.stop()
    shutil.rmtree(cp.workdir, ignore_errors=True)
