"""Custom request and response mapping: a caller's own JSON to a V1 or V2 body, and the answer back.

A mapping is two JSON templates whose string values are JMESPath expressions (the ``jmespath``
library). The request template is evaluated on the incoming body and must make a V1 or V2 body;
the response template is evaluated on the standard response, with the incoming body beside it as
``request`` (so ids can be echoed). Objects and lists in a template are walked; other values
(numbers, booleans, null) are taken as they are. For example::

    request:  {"instances": "records[*].[age, income]"}
    response: {"scores": "predictions[*][1]", "request_id": "request.id"}

turns ``{"id": "r1", "records": [{"age": 41, "income": 52000}]}`` into
``{"instances": [[41, 52000]]}`` and ``{"predictions": [[0.2, 0.8]]}`` into
``{"scores": [0.8], "request_id": "r1"}``.

Every expression is compiled when the mapping is made (``MappingError`` names one that does not
compile); one that yields nothing, or a value of the wrong type for a standard key, is an
``InvalidInput`` naming the template key, the expression and what it produced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from modelserver.errors import InvalidInput
from modelserver.settings import Settings

#: the types the standard body keys take (a V1 or V2 body); other keys are the caller's business
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "instances": (list,),
    "inputs": (list, dict),
    "outputs": (list,),
    "signature_name": (str,),
    "parameters": (dict,),
    "id": (str,),
    "target": (str,),
}
_TYPE_NAMES: dict[type, str] = {list: "a list", dict: "an object", str: "a string"}


class MappingError(ValueError):
    """A mapping that cannot be used: not an object, or an expression that does not compile."""


def _compile(template: Any, where: str) -> Any:
    if isinstance(template, str):
        try:
            return _Expr(where, template, jmespath.compile(template))
        except JMESPathError as e:
            raise MappingError(f"{where}: the expression {template!r} does not compile: {e}") from None
    if isinstance(template, dict):
        return {str(k): _compile(v, f"{where}.{k}") for k, v in template.items()}
    if isinstance(template, list):
        return [_compile(v, f"{where}[{i}]") for i, v in enumerate(template)]
    return template


@dataclass(frozen=True)
class _Expr:
    where: str
    text: str
    parsed: Any


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _evaluate(node: Any, data: Any, key: str | None) -> Any:
    if isinstance(node, _Expr):
        value = node.parsed.search(data)
        if value is None or value == []:
            raise InvalidInput(
                f"mapping {node.where}: the expression {node.text!r} yields nothing for this body "
                f"(got {_short(value)})"
            )
        wanted = _KEY_TYPES.get(key or "")
        if wanted and not isinstance(value, wanted):
            raise InvalidInput(
                f"mapping {node.where}: the expression {node.text!r} must give {' or '.join(_TYPE_NAMES[t] for t in wanted)}"
                f" for {key!r}, got {_short(value)}"
            )
        return value
    if isinstance(node, dict):
        return {k: _evaluate(v, data, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_evaluate(v, data, None) for v in node]
    return node


class Mapping:
    """A compiled pair of templates."""

    def __init__(self, request: Any, response: Any | None = None) -> None:
        if not isinstance(request, dict) or not request:
            raise MappingError(f"mapping request: expected a JSON object template, got {_short(request)}")
        if response is not None and not isinstance(response, dict):
            raise MappingError(f"mapping response: expected a JSON object template, got {_short(response)}")
        self.request_template = request
        self.response_template = response
        self._request = _compile(request, "request")
        self._response = _compile(response, "response") if response is not None else None

    def request(self, body: Any) -> dict[str, Any]:
        """The V1 or V2 body the caller's ``body`` maps to."""
        mapped = _evaluate(self._request, body, None)
        assert isinstance(mapped, dict)
        return mapped

    def response(self, answer: dict[str, Any], request: Any) -> Any:
        """The caller's answer: the response template on the standard answer (``request`` beside it)."""
        if self._response is None:
            return answer
        return _evaluate(self._response, {**answer, "request": request}, None)


def parse_template(text: str, what: str) -> Any:
    """A template from a setting: inline JSON, or the path of a JSON file."""
    text = text.strip()
    if not text.startswith(("{", "[")):
        try:
            with open(text, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise MappingError(f"{what}: cannot read the template file {text!r}: {e.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise MappingError(f"{what}: not JSON: {e}") from None


def from_settings(settings: Settings) -> Mapping | None:
    """The custom mapping the settings declare, compiled; ``MappingError`` (a ValueError) names what is wrong."""
    if not settings.mapping_request:
        if settings.mapping_response:
            raise ValueError("mapping_response: set mapping_request too (the response template maps its answers)")
        return None
    request = parse_template(settings.mapping_request, "mapping_request")
    response = parse_template(settings.mapping_response, "mapping_response") if settings.mapping_response else None
    mapping = Mapping(request, response)
    if settings.mapping_example:
        example = parse_template(settings.mapping_example, "mapping_example")
        try:
            mapping.request(example)
        except InvalidInput as e:
            raise ValueError(f"mapping_example does not map: {e.message}") from None
    return mapping
