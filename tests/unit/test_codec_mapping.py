"""Custom mapping templates: compiled once, evaluated on the caller's body and on the answer."""

from __future__ import annotations

import json

import pytest

from modelserver.codecs.mapping import Mapping, MappingError, parse_template
from modelserver.errors import InvalidInput

BODY = {"id": "r1", "records": [{"age": 41, "income": 52000.0}, {"age": 23, "income": 18000.0}]}


@pytest.mark.parametrize(
    ("request_template", "want"),
    [
        ({"instances": "records[*].[age, income]"}, {"instances": [[41, 52000.0], [23, 18000.0]]}),
        ({"inputs": {"x": "records[*].[age, income]"}, "signature_name": "'serving_default'"},
         {"inputs": {"x": [[41, 52000.0], [23, 18000.0]]}, "signature_name": "serving_default"}),
        ({"inputs": [{"name": "'x'", "datatype": "'FP32'", "shape": "[length(records), `2`]",
                      "data": "records[*].[age, income]"}]},
         {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[41, 52000.0], [23, 18000.0]]}]}),
        ({"instances": "records[*].[age, income]", "parameters": {"note": "id"}, "fixed": 3},
         {"instances": [[41, 52000.0], [23, 18000.0]], "parameters": {"note": "r1"}, "fixed": 3}),
    ],
)
def test_request_templates(request_template, want):
    assert Mapping(request_template).request(BODY) == want


def test_response_sees_the_answer_and_the_request():
    m = Mapping({"instances": "records[*].[age, income]"}, {"scores": "predictions[*][1]", "request_id": "request.id"})
    assert m.response({"predictions": [[0.2, 0.8], [0.9, 0.1]]}, BODY) == {"scores": [0.8, 0.1], "request_id": "r1"}
    assert Mapping({"instances": "x"}).response({"predictions": [1]}, {}) == {"predictions": [1]}


@pytest.mark.parametrize(
    ("template", "body", "words"),
    [
        ({"instances": "rows[*].[a, b]"}, BODY, ["request.instances", "'rows[*].[a, b]'", "yields nothing"]),
        ({"instances": "id"}, BODY, ["request.instances", "'id'", "must give a list", '"r1"']),
        ({"inputs": "records[0].age"}, BODY, ["request.inputs", "a list or an object", "41"]),
        ({"instances": "records[*].missing"}, BODY, ["request.instances", "yields nothing", "[]"]),
    ],
)
def test_what_does_not_map_is_a_400_naming_the_expression(template, body, words):
    with pytest.raises(InvalidInput) as e:
        Mapping(template).request(body)
    for w in words:
        assert w in e.value.message


@pytest.mark.parametrize(
    ("request_template", "response_template", "words"),
    [
        ({"instances": "records[*].["}, None, ["request.instances", "does not compile"]),
        ({"instances": "x"}, {"scores": "predictions[?"}, ["response.scores", "does not compile"]),
        ([], None, ["expected a JSON object"]),
        ({"instances": "x"}, "predictions", ["response", "expected a JSON object"]),
    ],
)
def test_a_broken_mapping_is_refused_when_made(request_template, response_template, words):
    with pytest.raises(MappingError) as e:
        Mapping(request_template, response_template)
    for w in words:
        assert w in str(e.value)


def test_templates_inline_or_from_a_file(tmp_path):
    assert parse_template('{"instances": "a"}', "mapping_request") == {"instances": "a"}
    f = tmp_path / "req.json"
    f.write_text(json.dumps({"instances": "b"}))
    assert parse_template(str(f), "mapping_request") == {"instances": "b"}
    with pytest.raises(MappingError, match="cannot read the template file"):
        parse_template(str(tmp_path / "none.json"), "mapping_request")
    with pytest.raises(MappingError, match="not JSON"):
        parse_template("{instances: a}", "mapping_request")
