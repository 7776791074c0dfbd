"""The OpenAPI 3 document for ``GET /openapi.json``, built from the server's own route table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from modelserver import __version__


class Endpoint(NamedTuple):
    method: str
    path: str  # OpenAPI form: /v1/models/{model}:predict
    tag: str
    summary: str


ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "what was expected and what came"}},
    "required": ["error"],
}
ERRORS = {
    "400": "invalid input (the message names the path of the first bad element)",
    "401": "missing or unknown API key",
    "404": "unknown model, version, label or signature",
    "413": "body over the size limit",
    "429": "too many requests in progress",
    "503": "not ready (loading, or shutting down)",
    "504": "the model did not answer in time",
}

V1_BODY = {
    "type": "object",
    "description": "row format {signature_name?, instances: [...]} or columnar {signature_name?, inputs: ...}",
    "properties": {
        "signature_name": {"type": "string"},
        "instances": {"type": "array", "items": {}},
        "inputs": {},
    },
}
V2_BODY = {
    "type": "object",
    "description": "Open Inference Protocol request; binary tensors with Inference-Header-Content-Length",
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string"},
                    "parameters": {"type": "object"},
                    "data": {"type": "array", "items": {}},
                },
            },
        },
        "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
    },
    "required": ["inputs"],
}


def _operation(e: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": [e.tag], "summary": e.summary, "responses": {"200": {"description": "OK"}}}
    params = [p[1:-1] for p in e.path.replace(":", "/").split("/") if p.startswith("{")]
    if params:
        op["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
        ]
    if e.method == "post":
        schema = V2_BODY if e.tag == "v2" else V1_BODY
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        for code, text in ERRORS.items():
            op["responses"][code] = {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
    return op


def build(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(e.path, {})[e.method] = _operation(e)
    return {
        "openapi": "3.0.3",
        "info": {"title": "modelserver", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
