"""The operator and the server agree through code: environment names, protocols, formats, probes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from modeldeploy_operator import builders
from modeldeploy_operator.spec import FORMATS, PROTOCOLS, parse

from modelserver import contract, settings

CRD = Path(__file__).resolve().parents[2] / "crds" / "modeldeployments.modeldeploy.dev.yaml"


def _crd_spec() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


def test_every_server_variable_the_operator_sets_is_a_declared_setting():
    spec = parse("iris", "ml", {
        "model": {"uri": "pvc://models/iris", "format": "huggingface"},
        "limits": {"maxBodyBytes": 1, "timeoutSeconds": 2, "maxInstances": 3, "maxConcurrentRequests": 4},
        "generation": {"maxSequences": 2, "maxModelLen": 64},
        "auth": {"apiKeySecretRef": {"name": "keys"}},
    })
    declared = {settings.env_name(name) for name in settings.setting_kinds()}
    names = {e["name"] for e in builders.server_env(spec)}
    assert names <= declared and len(names) == 21


def test_an_undeclared_setting_has_no_variable():
    with pytest.raises(KeyError, match="no setting 'max_batch'"):
        settings.env_name("max_batch")


def test_the_crd_offers_the_contract_s_protocols_and_formats():
    props = _crd_spec()
    assert tuple(props["protocol"]["enum"]) == PROTOCOLS == contract.PROTOCOLS
    assert tuple(props["model"]["properties"]["format"]["enum"]) == FORMATS == contract.FORMATS


def test_probes_and_port_are_the_server_s():
    dep = dict(builders.children(parse("iris", "ml", {}), "uid", "img"))["Deployment"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == contract.READY_PATH
    assert c["livenessProbe"]["httpGet"]["path"] == contract.LIVE_PATH
    assert c["ports"][0]["containerPort"] == contract.HTTP_PORT == settings.Settings().port
