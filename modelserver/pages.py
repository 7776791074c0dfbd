"""The human-facing pages: the model's home page with ready-to-paste curl examples, and the docs page.

Pure functions of the served models' signatures; the examples use the model's own example
values when it ships them (``assets.extra/modelserver_examples.json``) and placeholders otherwise.
Every example and every endpoint can be tried from the page: its path and body are editable, a
Send button calls the server (a few lines of inline script, nothing fetched from elsewhere: pods
have no internet) and the answer is shown under it, with its status.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from modelserver.interface import Servable, Signature, TensorSpec


@dataclass(frozen=True)
class Example:
    """One call a page shows: as a curl line, and as a form that sends it."""

    title: str
    method: str
    #: the path (and query) on this server
    path: str
    body: Any = None

    def curl(self, base: str, auth: bool) -> str:
        return curl(base + self.path, self.body, auth) if self.method == "POST" else curl_get(base + self.path, auth)


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


def _quoted(text: str) -> str:
    """``text`` as one single-quoted shell word."""
    return "'" + text.replace("'", "'\\''") + "'"


def curl(url: str, body: Any, auth: bool) -> str:
    key = " -H 'Authorization: Bearer $API_KEY'" if auth else ""
    return f"curl -s{key} -H 'Content-Type: application/json' {url} -d {_quoted(json.dumps(body))}"


def curl_get(url: str, auth: bool) -> str:
    key = " -H 'Authorization: Bearer $API_KEY'" if auth else ""
    return f"curl -s{key} {url}"


def examples_for(servable: Servable, sig: Signature) -> list[Example]:
    """A signature's V1 and V2 calls (titles ``V1`` and ``V2``)."""
    m = servable.name
    ex = servable.examples
    return [
        Example("V1", "POST", f"/v1/models/{m}:predict", _with_sig(v1_body(sig, ex), sig)),
        Example("V2", "POST", f"/v2/models/{m}/infer", _with_v2_sig(v2_body(sig, ex), sig)),
    ]


_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _flat(value: Any) -> list[Any]:
    return [x for v in value for x in _flat(v)] if isinstance(value, list) else [value]


def grpc_examples(servable: Servable, sig: Signature, address: str, auth: bool) -> str:
    """A ``tritonclient.grpc`` snippet and a ``grpcurl`` line for a signature (its example values)."""
    body = v2_body(sig, servable.examples)["inputs"]
    lines = ["import numpy as np", "import tritonclient.grpc as grpcclient", "",
             f"client = grpcclient.InferenceServerClient('{address}')", "inputs = []"]
    for t in body:
        kind = "object" if t["datatype"] == "BYTES" else "np." + {"BOOL": "bool_", "FP16": "float16"}.get(
            t["datatype"], t["datatype"].lower().replace("fp", "float"))
        values = [v.encode() if isinstance(v, str) else v for v in _flat(t["data"])]
        lines += [f"x = grpcclient.InferInput({t['name']!r}, {t['shape']}, {t['datatype']!r})",
                  f"x.set_data_from_numpy(np.array({values!r}, dtype={kind}).reshape({t['shape']}))",
                  "inputs.append(x)"]
    headers = ", headers={'authorization': 'Bearer ' + API_KEY}" if auth else ""
    params = "" if sig.name == "serving_default" else f", parameters={{'signature_name': {sig.name!r}}}"
    lines.append(f"result = client.infer({servable.name!r}, inputs{params}{headers})")
    lines += [f"print(result.as_numpy({t.name!r}))" for t in sig.outputs]
    request: dict[str, Any] = {"model_name": servable.name, "inputs": [
        {"name": t["name"], "datatype": t["datatype"], "shape": t["shape"],
         "contents": {_CONTENTS.get(t["datatype"], "fp32_contents"): _flat(t["data"])}} for t in body]}
    if sig.name != "serving_default":
        request["parameters"] = {"signature_name": {"string_param": sig.name}}
    key = " -H 'authorization: Bearer '$API_KEY" if auth else ""
    grpcurl = f"grpcurl -plaintext{key} -d {_quoted(json.dumps(request))} {address} inference.GRPCInferenceService/ModelInfer"
    return "\n".join(lines) + "\n\n" + grpcurl


def chat_body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32}


def completion_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "prompt": "Once upon a time", "max_tokens": 32, **extra}


def embeddings_body(model: str) -> dict[str, Any]:
    return {"model": model, "input": ["A sentence to embed."]}


def openai_examples(servable: Servable) -> list[Example]:
    """The OpenAI-style calls of a generative (``kind == "generate"``) or embedding model."""
    kind = getattr(servable, "kind", None)
    m = servable.name
    if kind == "generate":
        return [
            Example("chat", "POST", "/v1/chat/completions", chat_body(m)),
            Example("completion, streamed", "POST", "/v1/completions", completion_body(m, stream=True)),
            Example("completion, explained", "POST", "/v1/completions",
                    completion_body(m, max_tokens=8, temperature=0, explain=True)),
        ]
    if kind == "embed":
        return [Example("embeddings", "POST", "/v1/embeddings", embeddings_body(m))]
    return []


def openai_sdk(servable: Servable, base: str, auth: bool) -> str:
    """An ``openai`` SDK snippet for a generative or embedding model ('' for others)."""
    kind = getattr(servable, "kind", None)
    m = servable.name
    key = "os.environ['API_KEY']" if auth else "'unused'"
    head = f"from openai import OpenAI\nclient = OpenAI(base_url='{base}/v1', api_key={key})\n"
    if auth:
        head = "import os\n" + head
    if kind == "generate":
        return head + (
            f"reply = client.chat.completions.create(model='{m}', messages=[{{'role': 'user', 'content': 'Say hello.'}}])\n"
            "print(reply.choices[0].message.content)\n"
            f"for chunk in client.completions.create(model='{m}', prompt='Once upon a time', max_tokens=32, stream=True):\n"
            "    print(chunk.choices[0].text, end='', flush=True)"
        )
    if kind == "embed":
        return head + (
            f"result = client.embeddings.create(model='{m}', input=['A sentence to embed.'])\n"
            "print(len(result.data[0].embedding))"
        )
    return ""


def _with_sig(body: dict[str, Any], sig: Signature) -> dict[str, Any]:
    return body if sig.name == "serving_default" else {"signature_name": sig.name, **body}


def _with_v2_sig(body: dict[str, Any], sig: Signature) -> dict[str, Any]:
    return body if sig.name == "serving_default" else {"parameters": {"signature_name": sig.name}, **body}


_CSS = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
code,pre,textarea,input.path{font-family:ui-monospace,monospace;font-size:.85rem}
pre{background:#f3f4f6;padding:.75rem;overflow-x:auto;border-radius:.4rem;white-space:pre-wrap}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}
.ok{color:#1a7f37}.bad{color:#cf222e}
details.try{margin:-.5rem 0 1rem}details.try summary{cursor:pointer;color:#0969da}
.try textarea{width:100%;box-sizing:border-box;min-height:6rem}.try input.path{width:100%;box-sizing:border-box}
.try pre.answer:empty{display:none}.try pre.answer[data-ok=no]{background:#ffebe9}
"""

#: sends a try-it form: its method, path and body, the API key if one is given; shows status and answer
_SCRIPT = """
document.querySelectorAll('details.try').forEach(function (box) {
  box.querySelector('button.send').addEventListener('click', async function () {
    var out = box.querySelector('pre.answer'), body = box.querySelector('textarea');
    var headers = {}, key = document.getElementById('api-key');
    if (key && key.value) headers['Authorization'] = 'Bearer ' + key.value;
    if (body) headers['Content-Type'] = 'application/json';
    out.textContent = 'sending...';
    delete out.dataset.status;
    try {
      var r = await fetch(box.querySelector('input.path').value,
                          {method: box.dataset.method, headers: headers, body: body ? body.value : undefined});
      var text = await r.text();
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) {}
      out.textContent = r.status + ' ' + r.statusText + '\\n' + text;
      out.dataset.ok = r.ok ? 'yes' : 'no';
      out.dataset.status = r.status;
    } catch (e) {
      out.textContent = 'the request failed: ' + e;
      out.dataset.ok = 'no';
      out.dataset.status = '0';
    }
  });
});
"""


def _page(title: str, body: list[str], *, auth: bool) -> str:
    key = (
        "<p>This server needs an API key: set <code>API_KEY</code> before pasting the examples, and give it here to "
        "try them from this page: <input id='api-key' type='password' autocomplete='off' placeholder='API key'></p>"
        if auth else ""
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>" + body[0] + key + "".join(body[1:])
        + f"<script>{_SCRIPT}</script></body></html>"
    )


def try_form(method: str, path: str, body: Any = None) -> str:
    """A collapsed form that sends ``method path`` (with ``body``, editable) and shows the answer."""
    text = "" if body is None else html.escape(json.dumps(body, indent=2))
    editor = f"<textarea spellcheck='false'>{text}</textarea>" if method == "POST" else ""
    return (
        f"<details class='try' data-method='{method}'><summary>Try it</summary>"
        f"<input class='path' value='{html.escape(path, quote=True)}' spellcheck='false'>{editor}"
        "<p><button class='send' type='button'>Send</button></p><pre class='answer'></pre></details>"
    )


def _example(e: Example, base: str, auth: bool) -> str:
    return f"<p>{html.escape(e.title)}:</p><pre class='curl'>{html.escape(e.curl(base, auth))}</pre>" + try_form(
        e.method, e.path, e.body
    )


def _tensor_rows(tensors: tuple[TensorSpec, ...]) -> str:
    return "".join(
        f"<tr><td><code>{html.escape(t.name)}</code></td><td>{t.datatype}</td>"
        f"<td><code>{t.shape_list() if t.shape is not None else 'unknown'}</code></td></tr>"
        for t in tensors
    )


def mapping_section(request: Any, response: Any, example: Any, base: str, auth: bool) -> list[str]:
    """The custom mapping of ``/predict``: its templates, and an example in the caller's own form."""
    out = ["<h2>Custom mapping</h2><p><code>/predict</code> and <code>/explain</code> take the caller's own JSON, "
           "mapped by these JMESPath templates; <code>/v1/...</code> and <code>/v2/...</code> stay standard.</p>",
           f"<p>Request template:</p><pre>{html.escape(json.dumps(request, indent=2))}</pre>"]
    if response is not None:
        out.append(f"<p>Response template:</p><pre>{html.escape(json.dumps(response, indent=2))}</pre>")
    if example is not None:
        out.append(_example(Example("Mapped", "POST", "/predict", example), base, auth))
    return out


def render_home(
    servables: list[Servable], versions: dict[str, list[int]], base: str, *, ready: bool, protocol: str, auth: bool,
    mapping: list[str] | None = None, grpc: str | None = None,
) -> str:
    """The ``GET /`` page: each model's versions, signatures and examples, main protocol first
    (and ``mapping``, the custom mapping's section, first of all when there is one; ``grpc``, the
    gRPC server's address, when it serves)."""
    order = ["V1", "V2"] if protocol != "v2" else ["V2", "V1"]
    state = "<span class='ok'>ready</span>" if ready else "<span class='bad'>not ready</span>"
    parts = [f"<h1>modelserver</h1><p>Status: {state}. <a href='/docs'>API docs</a> · <a href='/openapi.json'>OpenAPI</a>"
             " · <a href='/metrics'>metrics</a></p>"]
    parts.extend(mapping or [])
    for s in servables:
        parts.append(f"<h2>{html.escape(s.name)}</h2><p>Version {s.version} (versions: "
                     f"{', '.join(map(str, versions[s.name]))}), {s.platform}.</p>")
        openai = _openai_section(s, base, auth)
        if openai and protocol == "openai":
            parts.extend(openai)
        for sig in s.signatures.values():
            parts.append(f"<h3>Signature <code>{html.escape(sig.name)}</code></h3>")
            parts.append("<table><tr><th>input</th><th>datatype</th><th>shape</th></tr>" + _tensor_rows(sig.inputs) + "</table>")
            parts.append("<table><tr><th>output</th><th>datatype</th><th>shape</th></tr>" + _tensor_rows(sig.outputs) + "</table>")
            examples = {e.title: e for e in examples_for(s, sig)}
            parts.extend(_example(examples[title], base, auth) for title in order)
            if grpc is not None and sig.inputs and not getattr(s, "kind", None):
                parts.append(f"<p>gRPC (Open Inference Protocol) on <code>{html.escape(grpc)}</code>, with "
                             f"tritonclient and grpcurl:</p><pre>{html.escape(grpc_examples(s, sig, grpc, auth))}</pre>")
        if openai and protocol != "openai":
            parts.extend(openai)
    return _page("modelserver", parts, auth=auth)


def _openai_section(servable: Servable, base: str, auth: bool) -> list[str]:
    examples = openai_examples(servable)
    if not examples:
        return []
    out = ["<h3>OpenAI-style API</h3>"]
    out.extend(_example(e, base, auth) for e in examples)
    out.append(f"<p>openai SDK:</p><pre>{html.escape(openai_sdk(servable, base, auth))}</pre>")
    return out


def endpoint_call(path: str, servable: Servable | None, labels: list[str], mapped: Any) -> tuple[str, Any]:
    """An OpenAPI path made concrete for the served model, and an example body for it (None: a GET).

    ``{model}``, ``{version}``, ``{label}`` and ``{signature}`` take the model's name, version, first
    label and first signature; the body is what the endpoint's protocol expects of that model.
    """
    if servable is None:
        return path, None
    sig = next(iter(servable.signatures.values()), None)
    concrete = (path.replace("{model}", servable.name).replace("{version}", str(servable.version))
                .replace("{label}", labels[0] if labels else "stable")
                .replace("{signature}", sig.name if sig is not None else "serving_default"))
    if path.endswith("/chat/completions"):
        return concrete, chat_body(servable.name)
    if path.endswith("/completions"):
        return concrete, completion_body(servable.name)
    if path.endswith("/embeddings"):
        return concrete, embeddings_body(servable.name)
    if path in ("/predict", "/explain") and mapped is not None:
        return concrete, mapped
    if sig is None:
        return concrete, {}
    if path.startswith("/v2/"):
        return concrete, _with_v2_sig(v2_body(sig, servable.examples), sig)
    body = v1_body(sig, servable.examples)
    return concrete, body if "{signature}" in path else _with_sig(body, sig)


def render_docs(spec: dict[str, Any], servable: Servable | None = None, *, labels: list[str] | None = None,
                mapped: Any = None, auth: bool = False) -> str:
    """Every endpoint of the OpenAPI document, each with a form to try it on the served model."""
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            concrete, body = endpoint_call(path, servable, labels or [], mapped)
            verb = method.upper()
            rows.append(
                f"<tr><td>{verb}</td><td><code>{html.escape(path)}</code>{try_form(verb, concrete, body)}</td>"
                f"<td>{html.escape(op.get('tags', [''])[0])}</td><td>{html.escape(op.get('summary', ''))}</td></tr>"
            )
    head = (f"<h1>{html.escape(spec['info']['title'])} {html.escape(spec['info']['version'])}</h1>"
            "<p>Every endpoint, with a form to try it on the served model. Machine-readable: "
            "<a href='/openapi.json'>/openapi.json</a>; examples: <a href='/'>the home page</a>.</p>")
    table = ("<table><tr><th>method</th><th>path</th><th>protocol</th><th>what</th></tr>" + "".join(rows) + "</table>")
    return _page("modelserver API", [head, table], auth=auth)
