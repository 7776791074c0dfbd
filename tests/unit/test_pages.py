"""Home-page examples and the OpenAPI document, built from signatures."""

from __future__ import annotations

import json
import shlex

from modelserver import openapi, pages
from modelserver.interface import Signature, TensorSpec
from modelserver.server.app import ROUTES

SIG = Signature(
    "serving_default",
    (TensorSpec("img", "FP32", (-1, 2, 3)), TensorSpec("tag", "BYTES", (-1,))),
    (TensorSpec("y", "FP32", (-1,)),),
)


def test_example_rows_follow_the_signature():
    assert pages.example_row(SIG.inputs[0], {}) == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    assert pages.example_row(SIG.inputs[1], {}) == "text"
    assert pages.example_row(SIG.inputs[0], {"img": [[0]]}) == [[0]]
    v2 = pages.v2_body(SIG, {})
    assert v2["inputs"][0]["shape"] == [1, 2, 3] and v2["inputs"][1]["shape"] == [1]


def test_curl_examples_are_valid_shell_and_json():
    cmd = pages.curl("http://h:1/v1/models/m:predict", pages.v1_body(SIG, {}), auth=True)
    argv = shlex.split(cmd)
    body = json.loads(argv[argv.index("-d") + 1])
    assert body["instances"][0]["tag"] == "text" and "Authorization: Bearer $API_KEY" in argv


def test_openapi_lists_every_route():
    spec = openapi.build(e for r in ROUTES for e in r.docs)
    paths = spec["paths"]
    for p in ("/v1/models/{model}:predict", "/v2/models/{model}/versions/{version}/infer", "/predict", "/v2/health/ready", "/{signature}/predict"):
        assert p in paths
    assert paths["/v1/models/{model}:predict"]["post"]["parameters"][0]["name"] == "model"
    assert "413" in paths["/v2/models/{model}/infer"]["post"]["responses"]


def test_try_forms_and_curl_lines_survive_quotes_and_markup():
    body = {"prompt": "Don't <b>stop</b> 'here'"}
    argv = shlex.split(pages.curl("http://h:1/v1/completions", body, auth=False))
    assert json.loads(argv[argv.index("-d") + 1]) == body
    form = pages.try_form("POST", "/v1/models/m'x:predict", body)
    assert "<b>" not in form and "m&#x27;x" in form and "&lt;b&gt;stop" in form
    assert "<textarea" not in pages.try_form("GET", "/v2/models/m")


def test_docs_fill_each_endpoint_for_the_served_model():
    class Model:
        name, version, examples = "iris", 3, {}
        signatures = {"classify": Signature("classify", SIG.inputs, SIG.outputs)}

    m = Model()
    assert pages.endpoint_call("/v1/models/{model}/versions/{version}:predict", m, [], None)[0] == (
        "/v1/models/iris/versions/3:predict")
    path, body = pages.endpoint_call("/v2/models/{model}/infer", m, [], None)
    assert body["parameters"] == {"signature_name": "classify"} and body["inputs"][0]["name"] == "img"
    assert pages.endpoint_call("/{signature}/predict", m, [], None)[0] == "/classify/predict"
    assert pages.endpoint_call("/predict", m, [], {"a": 1}) == ("/predict", {"a": 1})
    assert pages.endpoint_call("/v1/chat/completions", m, [], None)[1]["model"] == "iris"
    assert pages.endpoint_call("/v1/models/{model}/labels/{label}", m, ["canary"], None)[0] == (
        "/v1/models/iris/labels/canary")
    page = pages.render_docs(openapi.build(e for r in ROUTES for e in r.docs), m)  # type: ignore[arg-type]
    assert page.count("<details class='try'") == page.count("<tr>") - 1
