"""The Helm chart: lint, the CRD copy, least-privilege RBAC, and every rendered manifest validated
by the real API server (server-side dry run with strict field validation)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"


def tool(name: str) -> str:
    local = ROOT / ".tools" / "bin" / name
    found = str(local) if os.access(local, os.X_OK) else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed: run `make cluster-tools`")
    return found


def helm(*args: str) -> str:
    done = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def render(*sets: str, namespace: str = "modeldeploy-system") -> list[dict]:
    args = ["template", "md", str(CHART), "--namespace", namespace, "--include-crds"]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args)) if d]


def test_lint():
    out = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out


def test_crd_in_the_chart_is_the_crd_in_crds():
    assert (CHART / "crds" / "modeldeployments.modeldeploy.dev.yaml").read_bytes() == (
        ROOT / "crds" / "modeldeployments.modeldeploy.dev.yaml"
    ).read_bytes()


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={team-a,team-b}",)])
def test_rbac_is_least_privilege(sets):
    docs = render(*sets)
    roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], rule
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        assert "secrets" not in resources and "pods/exec" not in resources
    kinds = {d["kind"] for d in docs}
    if sets:
        assert {d["metadata"]["namespace"] for d in roles} == {"team-a", "team-b"} and "ClusterRole" not in kinds
    else:
        assert "ClusterRole" in kinds and "Role" not in kinds


def test_values_schema_refuses_bad_values():
    done = subprocess.run(
        [tool("helm"), "template", "md", str(CHART), "--set", "resyncSeconds=1"], capture_output=True, text=True
    )
    assert done.returncode != 0 and "resyncSeconds" in done.stderr


def test_operator_deployment_defaults():
    docs = render()
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert c["image"] == "modeldeploy/operator:0.1.0"
    assert env["MODELDEPLOY_SERVER_IMAGE"] == "modeldeploy/modelserver:0.1.0"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={default}", "image.tag=dev")])
def test_rendered_manifests_pass_the_api_server(kube_apiserver, tmp_path, sets):
    kubectl = tool("kubectl")
    ns = f"chart-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KUBECONFIG": str(kube_apiserver.kubeconfig)}
    subprocess.run([kubectl, "create", "namespace", ns], env=env, check=True, capture_output=True)
    docs = render(*sets, namespace=ns)
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    for group, extra in ((crds, []), (rest, ["--dry-run=server"])):
        f = tmp_path / f"{len(group)}.yaml"
        f.write_text(yaml.safe_dump_all(group))
        done = subprocess.run(
            [kubectl, "apply", "--server-side", "--validate=strict", "-f", str(f), *extra],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
