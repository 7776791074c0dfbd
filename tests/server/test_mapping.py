"""A deployment with a custom mapping: the caller's own JSON on /predict and /explain, the standard
paths unchanged, mapping errors as 400s naming the expression, and a broken mapping refused at start."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import requests

REQUEST = {"instances": "flowers[*].[sepal.length, sepal.width, petal.length, petal.width]"}
RESPONSE = {"id": "request.ticket", "virginica": "predictions[*][2]", "all": "predictions"}
EXAMPLE = {"ticket": "t-1", "flowers": [{"sepal": {"length": 6.7, "width": 3.0}, "petal": {"length": 5.2, "width": 2.3}}]}
FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def caller_body(rows, ticket="t-9"):
    return {"ticket": ticket, "flowers": [
        {"sepal": {"length": a, "width": b}, "petal": {"length": c, "width": d}} for a, b, c, d in rows]}


@pytest.fixture(scope="module")
def mapped(start_server, iris_path):
    return start_server(iris_path, "--name", "iris", "--mapping-request", json.dumps(REQUEST),
                        "--mapping-response", json.dumps(RESPONSE), "--mapping-example", json.dumps(EXAMPLE))


def test_the_caller_s_body_answers_with_the_numbers_of_the_v1_request(mapped):
    want = requests.post(mapped.url("/v1/models/iris:predict"), json={"instances": FLOWERS}, timeout=30).json()
    r = requests.post(mapped.url("/predict"), json=caller_body(FLOWERS), timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["id"] == "t-9" and got["all"] == want["predictions"]
    np.testing.assert_allclose(got["virginica"], [p[2] for p in want["predictions"]])


def test_explain_is_mapped_too(mapped):
    r = requests.post(mapped.url("/explain"), json=caller_body(FLOWERS[:1]), timeout=60)
    assert r.status_code == 200, r.text
    assert np.shape(r.json()["explanations"]) == (1, 4)  # no response template key names explanations


def test_the_standard_paths_stay_standard(mapped):
    r = requests.post(mapped.url("/v1/models/iris:predict"), json={"instances": FLOWERS}, timeout=30)
    assert r.status_code == 200 and set(r.json()) == {"predictions"}
    body = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": FLOWERS[0]}]}
    assert requests.post(mapped.url("/v2/models/iris/infer"), json=body, timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"ticket": "t", "plants": []}, ["request.instances", REQUEST["instances"], "yields nothing"]),
        ({"ticket": "t", "flowers": [{"sepal": {"length": 1}}]}, ["instances[0]"]),  # mapped, then refused by V1
    ],
)
def test_what_does_not_map_is_a_400(mapped, body, words):
    r = requests.post(mapped.url("/predict"), json=body, timeout=30)
    assert r.status_code == 400
    for w in words:
        assert w in r.json()["error"]


def test_the_home_page_shows_the_mapped_example_and_it_works(mapped):
    page = requests.get(mapped.url("/"), timeout=10).text
    assert "Custom mapping" in page and html.escape(REQUEST["instances"]) in page
    (line,) = [html.unescape(m) for m in re.findall(r"curl [^<]*/predict -d [^<]*", page)]
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
    assert json.loads(done.stdout)["id"] == "t-1"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--mapping-request", '{"instances": "flowers[*].["}'], "does not compile"),
        (["--mapping-request", '{"instances": "flowers"}', "--mapping-response", '{"a": "predictions[?"}'],
         "response.a"),
        (["--mapping-request", '{"instances": "flowers"}', "--mapping-example", '{"plants": 1}'],
         "mapping_example does not map"),
    ],
)
def test_a_broken_mapping_is_refused_at_start(iris_path, args, words):
    done = subprocess.run([sys.executable, "-m", "modelserver", "serve", str(iris_path), "--port", "0", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and words in done.stderr, done.stderr
