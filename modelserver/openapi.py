"""The OpenAPI 3 document for ``GET /openapi.json``, built from the server's own route table.

Each operation's request body and answers are described as served: the V1, V2 and OpenAI-style
bodies (with the fields each reads, and no others), the 200 answer's shape, and every error status
with its envelope (``{"error": "..."}``, or OpenAI's ``{"error": {message, type, param, code}}`` on
the OpenAI paths). A custom mapping makes ``/predict`` and ``/explain`` take any JSON object.
"""

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
OPENAI_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"}, "type": {"type": "string"},
                "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}
ERRORS = {
    "400": "invalid input (the message names the first bad element or field)",
    "401": "missing or unknown API key",
    "404": "unknown model, version, label or signature",
    "405": "method not served on this path",
    "413": "body over the size limit",
    "429": "too many requests in progress (Retry-After)",
    "503": "not ready (loading, failed, or shutting down)",
    "504": "the model did not answer in time",
}
GET_ERRORS = ("401", "404", "405", "503")

_ANY: dict[str, Any] = {}
_TENSOR_VALUES = {"description": "a value, or nested lists of values (numbers, booleans for BOOL, strings or "
                                 "{\"b64\": ...} for BYTES)"}
V1_FIELDS = {
    "signature_name": {"type": "string", "minLength": 1},
    "instances": {"type": "array", "items": _TENSOR_VALUES},
    "inputs": {"description": "one input's values, or an object of named inputs' values"},
}
V1_BODY = {
    "type": "object",
    "description": "row format {signature_name?, instances: [...]} or columnar {signature_name?, inputs: ...}",
    "properties": V1_FIELDS,
    "additionalProperties": False,
    "minProperties": 1,
}
V1_EXPLAIN_BODY = {**V1_BODY, "properties": {**V1_FIELDS, "target": {"type": "string", "description": "the output explained"}}}
V2_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                                                "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]},
        "parameters": {"type": "object"},
        "data": {"type": "array", "items": _TENSOR_VALUES},
    },
    "additionalProperties": False,
}
V2_BODY = {
    "type": "object",
    "description": "Open Inference Protocol request; binary tensors with Inference-Header-Content-Length",
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "minItems": 1, "items": V2_TENSOR},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}}}},
    },
    "required": ["inputs"],
    "additionalProperties": False,
}
SEED_BODY = {"description": "a V1 body, a V2 body, or the single-tensor form {name, shape, datatype, data}",
             "anyOf": [V1_EXPLAIN_BODY, V2_BODY, V2_TENSOR]}
V2_ANSWER = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "parameters": {"type": "object"},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name", "shape", "datatype"]}},
    },
}
V1_ANSWER = {"type": "object", "description": "predictions (row format) or outputs (columnar)",
             "properties": {"predictions": {"type": "array"}, "outputs": {}}}
V1_EXPLANATION = {"type": "object", "properties": {"explanations": {}, "outputs": {}}}
MESSAGE = {"type": "object", "required": ["role"], "properties": {
    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {
        "type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}},
        {"type": "null"}]},
    "tool_calls": {"type": "array", "description": "an assistant's earlier calls (arguments as a JSON string)",
                   "items": {"type": "object", "required": ["function"], "properties": {
                       "id": {"type": "string"}, "type": {"const": "function"},
                       "function": {"type": "object", "required": ["name", "arguments"],
                                    "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}}}}}},
    "tool_call_id": {"type": "string", "description": "a tool message: the call it answers"},
}}
RESPONSE_FORMAT = {"description": "the answer as JSON: any object, or fitting a JSON schema (compact, constrained)",
                   "oneOf": [
                       {"type": "object", "required": ["type"], "additionalProperties": False,
                        "properties": {"type": {"enum": ["text", "json_object"]}}},
                       {"type": "object", "required": ["type", "json_schema"], "additionalProperties": False,
                        "properties": {"type": {"const": "json_schema"}, "json_schema": {
                            "type": "object", "required": ["name"], "properties": {
                                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                                "description": {"type": "string"}, "schema": {"type": "object"},
                                "strict": {"type": "boolean"}}}}},
                   ]}
TOOL = {"type": "object", "required": ["type", "function"], "additionalProperties": False, "properties": {
    "type": {"const": "function"},
    "function": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "description": {"type": "string"},
        "parameters": {"type": "object"}, "strict": {"type": "boolean"}}}}}
TOOL_CHOICE = {"oneOf": [{"type": "string", "enum": ["none", "auto", "required"]},
                         {"type": "object", "required": ["type", "function"], "properties": {
                             "type": {"const": "function"},
                             "function": {"type": "object", "required": ["name"],
                                          "properties": {"name": {"type": "string"}}}}}]}
_GENERATION = {
    "model": {"type": "string"},
    "max_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "n": {"type": "integer", "minimum": 1},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}},
                       "additionalProperties": False},
    "stop": {"oneOf": [{"type": "string", "minLength": 1},
                       {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1}}]},
    "seed": {"type": "integer"},
    "explain": {"type": "boolean", "description": "integrated gradients over the prompt (see the README)"},
    "user": {"type": "string"},
    "response_format": RESPONSE_FORMAT,
}
COMPLETION_BODY = {
    "type": "object", "required": ["prompt"], "additionalProperties": False,
    "properties": {
        **_GENERATION,
        "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}},
                             {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
                             {"type": "array", "minItems": 1,
                              "items": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}}]},
        "logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
        "echo": {"type": "boolean"},
    },
}
CHAT_BODY = {
    "type": "object", "required": ["messages"], "additionalProperties": False,
    "properties": {
        **_GENERATION,
        "messages": {"type": "array", "minItems": 1, "items": MESSAGE},
        "logprobs": {"type": "boolean"},
        "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "tools": {"type": "array", "items": TOOL},
        "tool_choice": TOOL_CHOICE,
        "parallel_tool_calls": {"type": "boolean"},
    },
}
TOKENIZE_BODY = {"description": "a prompt, or chat messages rendered by the model's template", "oneOf": [
    {"type": "object", "required": ["prompt"], "additionalProperties": False, "properties": {
        "model": {"type": "string"}, "prompt": {"type": "string"}, "add_special_tokens": {"type": "boolean"},
        "return_token_strs": {"type": "boolean"}}},
    {"type": "object", "required": ["messages"], "additionalProperties": False, "properties": {
        "model": {"type": "string"}, "messages": {"type": "array", "minItems": 1, "items": MESSAGE},
        "add_generation_prompt": {"type": "boolean"}, "add_special_tokens": {"type": "boolean"},
        "tools": {"type": "array", "items": TOOL}, "return_token_strs": {"type": "boolean"}}},
]}
TOKENIZE_ANSWER = {"type": "object", "required": ["count", "max_model_len", "tokens"], "properties": {
    "count": {"type": "integer"}, "max_model_len": {"type": "integer"},
    "tokens": {"type": "array", "items": {"type": "integer"}},
    "token_strs": {"oneOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"}}]}}}
DETOKENIZE_BODY = {"type": "object", "required": ["tokens"], "additionalProperties": False, "properties": {
    "model": {"type": "string"}, "tokens": {"type": "array", "items": {"type": "integer", "minimum": 0}}}}
DETOKENIZE_ANSWER = {"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}}
EMBEDDINGS_BODY = {
    "type": "object", "required": ["input"], "additionalProperties": False,
    "properties": {
        "model": {"type": "string"},
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}},
                            {"type": "array", "minItems": 1, "items": {"type": "integer"}},
                            {"type": "array", "minItems": 1, "items": {"type": "array", "items": {"type": "integer"}}}]},
        "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1},
        "user": {"type": "string"},
    },
}
_USAGE = {"type": "object", "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
                                           "total_tokens": {"type": "integer"}}}
COMPLETION_ANSWER = {"type": "object", "required": ["id", "object", "choices"], "properties": {
    "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"}, "model": {"type": "string"},
    "choices": {"type": "array"}, "usage": _USAGE, "explanation": {"type": "object"}}}
EMBEDDINGS_ANSWER = {"type": "object", "required": ["object", "data"], "properties": {
    "object": {"const": "list"}, "data": {"type": "array"}, "model": {"type": "string"}, "usage": _USAGE}}
MODELS_ANSWER = {"type": "object", "required": ["object", "data"], "properties": {
    "object": {"const": "list"}, "data": {"type": "array", "items": {"type": "object", "required": ["id", "object"]}}}}
MODEL_CARD = {"type": "object", "required": ["id", "object"], "properties": {"id": {"type": "string"}}}
V1_LIST = {"type": "object", "required": ["models", "object", "data"], "properties": {
    "models": {"type": "array"}, "object": {"const": "list"}, "data": {"type": "array"}}}
V1_STATUS = {"type": "object", "required": ["model_version_status"],
             "properties": {"model_version_status": {"type": "array"}}}
V1_METADATA = {"type": "object", "required": ["model_spec", "metadata"]}
V2_MODEL = {"type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"]}
REPOSITORY_INDEX_BODY = {"type": "object", "properties": {"ready": {"type": "boolean"}}, "additionalProperties": False}
REPOSITORY_INDEX = {
    "type": "array",
    "items": {
        "type": "object", "required": ["name", "state", "reason"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "state": {"enum": ["READY", "LOADING", "UNAVAILABLE"]}, "reason": {"type": "string"}},
    },
}
REPOSITORY_CALL_BODY = {
    "type": "object", "additionalProperties": False,
    "properties": {"parameters": {"type": "object", "description": "unload: unload_dependents (a boolean); "
                                  "load: none"}},
}
V2_SERVER = {"type": "object", "required": ["name", "version", "extensions"]}
LIVE = {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}}
READY = {"type": "object", "required": ["ready"], "properties": {
    "ready": {"type": "boolean"}, "reason": {"type": "string"}, "error": {"type": "string"}}}
MODEL_READY = {"type": "object", "required": ["name", "ready"], "properties": {
    "name": {"type": "string"}, "ready": {"type": "boolean"}, "error": {"type": "string"}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _answer(e: Endpoint) -> dict[str, Any]:
    """The 200 answer of an endpoint (and, for the probes, their 503)."""
    p = e.path
    if p == "/" or p == "/docs":
        return {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}
    if p == "/metrics":
        return {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    if p == "/openapi.json":
        return {"200": _json({"type": "object", "required": ["openapi", "paths"]})}
    if p.endswith("/health/live"):
        return {"200": _json(LIVE)}
    if p.endswith("/health/ready"):
        return {"200": _json(READY), "503": _json(READY, "not ready: the reason code and what happened")}
    if p.endswith("/ready"):
        return {"200": _json(MODEL_READY), "503": _json(MODEL_READY, "the model is not ready")}
    if p.endswith("/completions"):
        return {"200": {"description": "the completion, or Server-Sent Events when stream is true",
                        "content": {"application/json": {"schema": COMPLETION_ANSWER},
                                    "text/event-stream": {"schema": {"type": "string"}}}}}
    if p.endswith("/embeddings"):
        return {"200": _json(EMBEDDINGS_ANSWER)}
    if p == "/tokenize":
        return {"200": _json(TOKENIZE_ANSWER)}
    if p == "/detokenize":
        return {"200": _json(DETOKENIZE_ANSWER)}
    if p == "/openai/v1/models":
        return {"200": _json(MODELS_ANSWER)}
    if p.startswith("/openai/v1/models/"):
        return {"200": _json(MODEL_CARD)}
    if p == "/v1/models":
        return {"200": _json(V1_LIST)}
    if p == "/v2":
        return {"200": _json(V2_SERVER)}
    if p == "/v2/repository/index":
        return {"200": _json(REPOSITORY_INDEX)}
    if p.startswith("/v2/repository/"):
        return {"200": _json({"type": "object"})}
    if p.startswith("/v2/models/") and e.method == "get":
        return {"200": _json(V2_MODEL)}
    if p.endswith("/metadata"):
        return {"200": _json(V1_METADATA)}
    if p.startswith("/v1/models/") and e.method == "get":
        return {"200": _json(V1_STATUS)}
    if e.tag == "v2":
        return {"200": {"description": "outputs (JSON, or JSON then binary tensors)",
                        "content": {"application/json": {"schema": V2_ANSWER},
                                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
    if p.startswith("/v1/"):
        return {"200": _json(V1_EXPLANATION if p.endswith(":explain") else V1_ANSWER)}
    return {"200": {"description": "V1 answer for a V1 body, V2 answer for a V2 or single-tensor body",
                    "content": {"application/json": {"schema": {"type": "object"}},
                                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def _request(e: Endpoint, mapped: bool) -> dict[str, Any] | None:
    p = e.path
    if e.method != "post":
        return None
    schema: dict[str, Any]
    if p.endswith("/chat/completions"):
        schema = CHAT_BODY
    elif p.endswith("/completions"):
        schema = COMPLETION_BODY
    elif p.endswith("/embeddings"):
        schema = EMBEDDINGS_BODY
    elif p == "/tokenize":
        schema = TOKENIZE_BODY
    elif p == "/detokenize":
        schema = DETOKENIZE_BODY
    elif p in ("/predict", "/explain") and mapped:
        schema = {"type": "object", "description": "the caller's own JSON, mapped by the deployment's templates"}
    elif p == "/v2/repository/index":
        return {"required": False, "content": {"application/json": {"schema": REPOSITORY_INDEX_BODY}}}
    elif p.startswith("/v2/repository/"):
        return {"required": False, "content": {"application/json": {"schema": REPOSITORY_CALL_BODY}}}
    elif p.startswith("/v2/"):
        return {"required": True, "content": {"application/json": {"schema": V2_BODY},
                                              "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    elif p.startswith("/v1/"):
        schema = V1_EXPLAIN_BODY if p.endswith(":explain") else V1_BODY
    else:
        schema = SEED_BODY
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _operation(e: Endpoint, mapped: bool) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": [e.tag], "summary": e.summary, "responses": _answer(e)}
    params = [p[1:-1] for p in e.path.replace(":", "/").split("/") if p.startswith("{")]
    if params:
        op["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "pattern": "^[^/:]+$"}}
            for p in params
        ]
    body = _request(e, mapped)
    if body is not None:
        op["requestBody"] = body
    error = {"$ref": "#/components/schemas/OpenAIError" if e.tag == "openai" else "#/components/schemas/Error"}
    codes = ERRORS if e.method == "post" else {c: ERRORS[c] for c in GET_ERRORS}
    for code, text in codes.items():
        op["responses"].setdefault(code, {"description": text, "content": {"application/json": {"schema": error}}})
    return op


def build(endpoints: Iterable[Endpoint], *, mapped: bool = False) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(e.path, {})[e.method] = _operation(e, mapped)
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelserver", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, "OpenAIError": OPENAI_ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
