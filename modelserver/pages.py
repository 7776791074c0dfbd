"""The human-facing pages: the model's home page with ready-to-paste curl examples, and the docs page.

Pure functions of the served models' signatures; the examples use the model's own example
values when it ships them (``assets.extra/modelserver_examples.json``) and placeholders otherwise.
"""

from __future__ import annotations

import html
import json
from typing import Any

from modelserver.interface import Servable, Signature, TensorSpec


def example_row(spec: TensorSpec, examples: dict[str, Any]) -> Any:
    """One instance (one row) for an input: the model's example, or a placeholder of the right shape."""
    if spec.name in examples:
        return examples[spec.name]
    value: Any = {"FP16": 1.0, "FP32": 1.0, "FP64": 1.0, "BOOL": True, "BYTES": "text"}.get(spec.datatype, 1)
    dims = [] if spec.shape is None else [1 if d == -1 else d for d in spec.shape[1:]]
    for d in reversed(dims):
        value = [value] * d
    return value


def _shape_of(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def v1_body(sig: Signature, examples: dict[str, Any]) -> dict[str, Any]:
    if len(sig.inputs) == 1:
        return {"instances": [example_row(sig.inputs[0], examples)]}
    return {"instances": [{t.name: example_row(t, examples) for t in sig.inputs}]}


def v2_body(sig: Signature, examples: dict[str, Any]) -> dict[str, Any]:
    inputs = []
    for t in sig.inputs:
        row = example_row(t, examples)
        inputs.append({"name": t.name, "shape": [1] + _shape_of(row), "datatype": t.datatype, "data": [row]})
    return {"inputs": inputs}


def curl(url: str, body: dict[str, Any], auth: bool) -> str:
    key = " -H 'Authorization: Bearer $API_KEY'" if auth else ""
    return f"curl -s{key} -H 'Content-Type: application/json' {url} -d '{json.dumps(body)}'"


def examples_for(servable: Servable, sig: Signature, base: str, auth: bool) -> dict[str, str]:
    m = servable.name
    ex = servable.examples
    return {
        "v1": curl(f"{base}/v1/models/{m}:predict", _with_sig(v1_body(sig, ex), sig), auth),
        "v2": curl(f"{base}/v2/models/{m}/infer", _with_v2_sig(v2_body(sig, ex), sig), auth),
    }


def openai_examples(servable: Servable, base: str, auth: bool) -> dict[str, str]:
    """curl and ``openai`` SDK examples for a generative (``kind == "generate"``) or embedding model."""
    kind = getattr(servable, "kind", None)
    m = servable.name
    key = "os.environ['API_KEY']" if auth else "'unused'"
    head = f"from openai import OpenAI\nclient = OpenAI(base_url='{base}/v1', api_key={key})\n"
    if auth:
        head = "import os\n" + head
    if kind == "generate":
        chat = {"model": m, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32}
        return {
            "curl (chat)": curl(f"{base}/v1/chat/completions", chat, auth),
            "curl (completion, streamed)": curl(
                f"{base}/v1/completions", {"model": m, "prompt": "Once upon a time", "max_tokens": 32, "stream": True}, auth
            ),
            "openai SDK": head + (
                f"reply = client.chat.completions.create(model='{m}', messages=[{{'role': 'user', 'content': 'Say hello.'}}])\n"
                "print(reply.choices[0].message.content)\n"
                f"for chunk in client.completions.create(model='{m}', prompt='Once upon a time', max_tokens=32, stream=True):\n"
                "    print(chunk.choices[0].text, end='', flush=True)"
            ),
        }
    if kind == "embed":
        return {
            "curl (embeddings)": curl(f"{base}/v1/embeddings", {"model": m, "input": ["A sentence to embed."]}, auth),
            "openai SDK": head + (
                f"result = client.embeddings.create(model='{m}', input=['A sentence to embed.'])\n"
                "print(len(result.data[0].embedding))"
            ),
        }
    return {}


def _with_sig(body: dict[str, Any], sig: Signature) -> dict[str, Any]:
    return body if sig.name == "serving_default" else {"signature_name": sig.name, **body}


def _with_v2_sig(body: dict[str, Any], sig: Signature) -> dict[str, Any]:
    return body if sig.name == "serving_default" else {"parameters": {"signature_name": sig.name}, **body}


_CSS = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
code,pre{font-family:ui-monospace,monospace;font-size:.85rem}
pre{background:#f3f4f6;padding:.75rem;overflow-x:auto;border-radius:.4rem;white-space:pre-wrap}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left}
.ok{color:#1a7f37}.bad{color:#cf222e}
"""


def _tensor_rows(tensors: tuple[TensorSpec, ...]) -> str:
    return "".join(
        f"<tr><td><code>{html.escape(t.name)}</code></td><td>{t.datatype}</td>"
        f"<td><code>{t.shape_list() if t.shape is not None else 'unknown'}</code></td></tr>"
        for t in tensors
    )


def mapping_section(request: Any, response: Any, example: Any, base: str, auth: bool) -> list[str]:
    """The custom mapping of ``/predict``: its templates, and a curl example in the caller's own form."""
    out = ["<h2>Custom mapping</h2><p><code>/predict</code> and <code>/explain</code> take the caller's own JSON, "
           "mapped by these JMESPath templates; <code>/v1/...</code> and <code>/v2/...</code> stay standard.</p>",
           f"<p>Request template:</p><pre>{html.escape(json.dumps(request, indent=2))}</pre>"]
    if response is not None:
        out.append(f"<p>Response template:</p><pre>{html.escape(json.dumps(response, indent=2))}</pre>")
    if example is not None:
        out.append(f"<p>Mapped:</p><pre>{html.escape(curl(f'{base}/predict', example, auth))}</pre>")
    return out


def render_home(
    servables: list[Servable], versions: dict[str, list[int]], base: str, *, ready: bool, protocol: str, auth: bool,
    mapping: list[str] | None = None,
) -> str:
    """The ``GET /`` page: each model's versions, signatures and curl examples, main protocol first
    (and ``mapping``, the custom mapping's section, first of all when there is one)."""
    order = ["v1", "v2"] if protocol != "v2" else ["v2", "v1"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>modelserver</title><style>{_CSS}</style></head><body>"]
    state = "<span class='ok'>ready</span>" if ready else "<span class='bad'>not ready</span>"
    parts.append(f"<h1>modelserver</h1><p>Status: {state}. <a href='/docs'>API docs</a> · <a href='/openapi.json'>OpenAPI</a> · <a href='/metrics'>metrics</a></p>")
    if auth:
        parts.append("<p>This server needs an API key: set <code>API_KEY</code> before pasting the examples.</p>")
    parts.extend(mapping or [])
    for s in servables:
        parts.append(f"<h2>{html.escape(s.name)}</h2><p>Version {s.version} (versions: {', '.join(map(str, versions[s.name]))}), {s.platform}.</p>")
        openai = openai_examples(s, base, auth)
        if openai and protocol == "openai":
            parts.extend(_openai_section(openai))
        for sig in s.signatures.values():
            parts.append(f"<h3>Signature <code>{html.escape(sig.name)}</code></h3>")
            parts.append("<table><tr><th>input</th><th>datatype</th><th>shape</th></tr>" + _tensor_rows(sig.inputs) + "</table>")
            parts.append("<table><tr><th>output</th><th>datatype</th><th>shape</th></tr>" + _tensor_rows(sig.outputs) + "</table>")
            ex = examples_for(s, sig, base, auth)
            for proto in order:
                parts.append(f"<p>{proto.upper()}:</p><pre>{html.escape(ex[proto])}</pre>")
        if openai and protocol != "openai":
            parts.extend(_openai_section(openai))
    parts.append("</body></html>")
    return "".join(parts)


def _openai_section(examples: dict[str, str]) -> list[str]:
    out = ["<h3>OpenAI-style API</h3>"]
    for title, text in examples.items():
        out.append(f"<p>{html.escape(title)}:</p><pre>{html.escape(text)}</pre>")
    return out


def render_docs(spec: dict[str, Any]) -> str:
    """A plain HTML list of every endpoint in the OpenAPI document (no scripts, works offline)."""
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            rows.append(
                f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op.get('tags', [''])[0])}</td><td>{html.escape(op.get('summary', ''))}</td></tr>"
            )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>modelserver API</title><style>{_CSS}</style></head>"
        f"<body><h1>{html.escape(spec['info']['title'])} {html.escape(spec['info']['version'])}</h1>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>.</p>"
        "<table><tr><th>method</th><th>path</th><th>protocol</th><th>what</th></tr>"
        + "".join(rows) + "</table></body></html>"
    )
