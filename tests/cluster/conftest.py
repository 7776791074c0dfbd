"""Fixtures for tests that need a real Kubernetes API server but no nodes.

``kube_apiserver`` (session scope) starts etcd, kube-apiserver and kube-controller-manager on
127.0.0.1 from the binaries built by ``make apiserver-bins`` and yields a
:class:`ControlPlane` with ``.kubeconfig`` (path), ``.url`` and ``.token``.  ``k8s_client`` is a
``kubernetes.client.ApiClient`` configured for it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "modeldeploy_kube_control_plane", Path(__file__).with_name("kube_control_plane.py")
)
kcp = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = kcp
_spec.loader.exec_module(kcp)


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory):
    missing = kcp.missing_binaries()
    if missing:
        pytest.skip(f"Kubernetes binaries {missing} not built in {kcp.bin_dir()}: run `make apiserver-bins`")
    cp = kcp.start_control_plane(tmp_path_factory.mktemp("apiserver"))
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kube_kubeconfig(kube_apiserver) -> str:
    return str(kube_apiserver.kubeconfig)


@pytest.fixture
def k8s_client(kube_apiserver):
    kubernetes = pytest.importorskip("kubernetes")
    api = kubernetes.config.new_client_from_config(config_file=str(kube_apiserver.kubeconfig))
    try:
        yield api
    finally:
        api.close()
