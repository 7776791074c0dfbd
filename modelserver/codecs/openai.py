"""OpenAI-style bodies: requests for completions, chat completions and embeddings checked into typed
objects, and the response, stream-chunk and logprobs bodies built from generated tokens.

Pure functions: no model, no IO. Every refusal is an ``InvalidInput`` naming the field (``param``)
and saying what was expected and what came, for the OpenAI error envelope.
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelserver.codecs.structured import Tools, json_grammar, parse_response_format, parse_tools, tools_grammar
from modelserver.errors import InvalidInput, shown
from modelserver.interface import SamplingParams, TokenAttributions

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOP = 4
MAX_LOGPROBS = 20
#: the legacy completions API's default when max_tokens is not given
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
#: fields we do not implement: refused when set to anything but their neutral value
UNSUPPORTED = {
    "frequency_penalty": 0, "presence_penalty": 0, "logit_bias": None, "functions": None,
    "best_of": 1, "suffix": None, "function_call": "none",
}
#: fields each endpoint reads (besides ``UNSUPPORTED``); any other field is refused, never ignored.
#: ``user`` (an end-user id for the provider's abuse monitoring) is read and has no effect here.
_GENERATION_FIELDS = frozenset({"model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options",
                                "stop", "seed", "explain", "user", "response_format"}) | set(UNSUPPORTED)
KNOWN_FIELDS = {
    "completions": _GENERATION_FIELDS | {"prompt", "logprobs", "echo"},
    "chat": _GENERATION_FIELDS | {"messages", "logprobs", "top_logprobs", "max_completion_tokens", "tools",
                                  "tool_choice", "parallel_tool_calls"},
    "embeddings": frozenset({"model", "input", "encoding_format", "dimensions", "user"}),
    "tokenize_prompt": frozenset({"model", "prompt", "add_special_tokens", "return_token_strs"}),
    "tokenize_chat": frozenset({"model", "messages", "add_generation_prompt", "add_special_tokens", "tools",
                                "return_token_strs"}),
    "detokenize": frozenset({"model", "tokens"}),
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def new_id(prefix: str) -> str:
    return f"{prefix}-{os.urandom(12).hex()}"


# -- field checks -------------------------------------------------------------------------------
def _obj(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput(f"expected a JSON object as the request body, got {_kind(body)}")
    return body


def _int(body: dict[str, Any], name: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name}: expected an integer, got {_kind(value)} {shown(value)}", param=name)
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise InvalidInput(f"{name}: expected an integer {bound}, got {value}", param=name)
    return value


def _num(body: dict[str, Any], name: str, default: float, lo: float, hi: float, *, lo_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{name}: expected a number, got {_kind(value)} {shown(value)}", param=name)
    if not math.isfinite(value):
        raise InvalidInput(f"{name}: expected a finite number, got {value}", param=name)
    if value > hi or value < lo or (lo_open and value <= lo):
        low = f"more than {lo:g}" if lo_open else f"{lo:g}"
        raise InvalidInput(f"{name}: expected a number from {low} to {hi:g}, got {value}", param=name)
    return float(value)


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{name}: expected true or false, got {_kind(value)} {shown(value)}", param=name)
    return value


def _model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidInput(f"model: expected a model name (a string), got {_kind(model)}", param="model")
    return model


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise InvalidInput(f"stop: expected a string or an array of strings, got {_kind(stop)}", param="stop")
    if len(items) > MAX_STOP:
        raise InvalidInput(f"stop: expected at most {MAX_STOP} sequences, got {len(items)}", param="stop")
    if any(s == "" for s in items):
        raise InvalidInput("stop: expected non-empty strings, got an empty one", param="stop")
    return tuple(items)


def _known(body: dict[str, Any], endpoint: str) -> None:
    """Refuse a field this endpoint does not read, naming it (a typo or an unbuilt feature, never ignored)."""
    known = KNOWN_FIELDS[endpoint]
    unknown = sorted(k for k in body if k not in known)
    if unknown:
        raise InvalidInput(
            f"{unknown[0]}: not a field this server reads on {endpoint} (it reads {', '.join(sorted(known))})",
            param=unknown[0],
        )


def _unsupported(body: dict[str, Any]) -> None:
    for name, neutral in UNSUPPORTED.items():
        value = body.get(name)
        if value is not None and value != neutral and value != [] and value != {}:
            raise InvalidInput(f"{name} is not supported by this server (got {shown(value)})", param=name)


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise InvalidInput("stream_options: only allowed when stream is true", param="stream_options")
    if not isinstance(options, dict):
        raise InvalidInput(f"stream_options: expected an object, got {_kind(options)}", param="stream_options")
    unknown = sorted(k for k in options if k != "include_usage")
    if unknown:
        raise InvalidInput(f"stream_options.{unknown[0]}: not a field this server reads (it reads include_usage)",
                           param="stream_options")
    return stream, _bool(options, "include_usage")


@dataclass
class Generation:
    """What both generation endpoints share once checked."""

    model: str | None
    params: SamplingParams
    n: int
    seed: int | None
    stream: bool
    include_usage: bool
    #: max_tokens as the client gave it (None: up to the context length, or the endpoint default)
    max_tokens: int | None
    top_logprobs: int | None = None
    #: explain the completion (integrated gradients over the prompt's input embeddings)
    explain: bool = False
    #: the field a grammar in ``params`` comes from (response_format or tools), for its errors
    grammar_param: str = ""
    #: chat: the tools offered, and how they may be used
    tools: Tools | None = None


def _grammar(body: dict[str, Any], tools: Tools | None) -> tuple[str | None, str]:
    """The grammar the answer must follow, and the field it comes from (None: free text)."""
    schema = parse_response_format(body.get("response_format"))
    if schema is not None and tools is not None and tools.constrained:
        raise InvalidInput("response_format: not with tools that may be called (tool_choice "
                           f"{tools.choice!r}); set tool_choice to none, or leave response_format out",
                           param="response_format")
    if schema is not None:
        return json_grammar(schema), "response_format"
    if tools is not None and tools.constrained:
        return tools_grammar(tools), "tools"
    return None, ""


def _generation(body: dict[str, Any], *, max_n: int, logprobs: int | None, prompt_logprobs: bool,
                max_tokens: int | None, tools: Tools | None = None) -> Generation:
    _unsupported(body)
    n = _int(body, "n", 1, 1)
    assert n is not None
    if n > max_n:
        raise InvalidInput(f"n: at most {max_n} choices per request on this server, got {n}", param="n")
    stream, include_usage = _stream(body)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidInput(f"seed: expected an integer, got {_kind(seed)} {shown(seed)}", param="seed")
    explain = _bool(body, "explain")
    if explain and stream:
        raise InvalidInput("explain: not available with stream: true (the explanation needs the whole "
                           "completion); ask without streaming", param="explain")
    if explain and n > 1:
        raise InvalidInput(f"explain: explains one choice; got n={n}", param="explain")
    grammar, grammar_param = _grammar(body, tools)
    if explain and grammar is not None:
        raise InvalidInput(f"explain: not with {grammar_param} (an explanation is of free text)", param="explain")
    params = SamplingParams(
        max_tokens=max_tokens or 1,
        temperature=_num(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_num(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        stop=_stop(body),
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        grammar=grammar,
    )
    return Generation(_model(body), params, n, seed, stream, include_usage, max_tokens, explain=explain,
                      grammar_param=grammar_param, tools=tools)


# -- completions ----------------------------------------------------------------------------------
@dataclass
class CompletionRequest:
    gen: Generation
    #: each prompt as text or token ids; each gets ``n`` choices
    prompts: list[str | list[int]]
    echo: bool


def _prompts(body: dict[str, Any]) -> list[str | list[int]]:
    if "prompt" not in body or body["prompt"] is None:
        raise InvalidInput("prompt: required (a string, an array of strings, or token ids)", param="prompt")
    p = body["prompt"]
    if isinstance(p, str):
        return [p]
    if isinstance(p, list) and p:
        if all(isinstance(x, str) for x in p):
            return list(p)
        if all(isinstance(x, int) and not isinstance(x, bool) for x in p):
            return [list(p)]
        if all(isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(t, bool) for t in x) for x in p):
            return [list(x) for x in p]
    raise InvalidInput(
        f"prompt: expected a string, an array of strings, an array of token ids or an array of such "
        f"arrays, got {_kind(p)}" + (" (empty)" if p == [] else ""),
        param="prompt",
    )


def check_generations(prompts: int, n: int, limit: int) -> None:
    """At most ``limit`` generations (prompts times ``n``) in one request."""
    if prompts * n > limit:
        raise InvalidInput(f"prompt: {prompts} prompts x n={n} is more than the {limit} generations this server "
                           "queues", param="prompt")


def parse_completion(body: Any, *, max_n: int, max_generations: int | None = None) -> CompletionRequest:
    b = _obj(body)
    _known(b, "completions")
    prompts = _prompts(b)
    if max_generations is not None:  # before anything else is checked of each prompt
        check_generations(len(prompts), 1, max_generations)
    logprobs = _int(b, "logprobs", None, 0, MAX_LOGPROBS)
    echo = _bool(b, "echo")
    max_tokens = _int(b, "max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS, 1)
    gen = _generation(b, max_n=max_n, logprobs=logprobs, prompt_logprobs=echo and logprobs is not None,
                      max_tokens=max_tokens)
    if gen.explain and len(prompts) > 1:
        raise InvalidInput(f"explain: explains one prompt at a time; got {len(prompts)} prompts", param="explain")
    return CompletionRequest(gen, prompts, echo)


# -- chat -------------------------------------------------------------------------------------------
@dataclass
class ChatRequest:
    gen: Generation
    messages: list[dict[str, Any]]
    logprobs: bool
    add_generation_prompt: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _content(value: Any, where: str) -> str:
    """Message content as text: a string, or an array of text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for j, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else _kind(part)
                raise InvalidInput(
                    f"{where}.content[{j}]: expected a text part {{\"type\": \"text\", \"text\": ...}}, got {shown(kind)}"
                    " (this model reads text only)",
                    param=f"{where}.content",
                )
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidInput(f"{where}.content: expected a string or an array of text parts, got {_kind(value)}",
                       param=f"{where}.content")


def _history_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    """An assistant message's earlier tool calls, their arguments as objects (as chat templates read them)."""
    if not isinstance(calls, list):
        raise InvalidInput(f"{where}.tool_calls: expected an array, got {_kind(calls)}", param=f"{where}.tool_calls")
    out = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
            raise InvalidInput(f"{where}.tool_calls[{j}]: expected {{\"id\", \"type\": \"function\", \"function\": "
                               "{\"name\", \"arguments\": a JSON string}}", param=f"{where}.tool_calls")
        try:
            arguments = json.loads(fn["arguments"])
        except ValueError:
            raise InvalidInput(f"{where}.tool_calls[{j}].function.arguments: expected a JSON text, got "
                               f"{shown(fn['arguments'])}", param=f"{where}.tool_calls") from None
        out.append({**call, "function": {"name": fn["name"], "arguments": arguments}})
    return out


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = body.get("messages")
    if msgs is None:
        raise InvalidInput("messages: required (an array of {\"role\", \"content\"} objects)", param="messages")
    if not isinstance(msgs, list) or not msgs:
        raise InvalidInput(f"messages: expected a non-empty array, got {_kind(msgs)}"
                           + (" (empty)" if msgs == [] else ""), param="messages")
    out = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidInput(f"{where}: expected an object with role and content, got {_kind(m)}", param=where)
        role = m.get("role")
        if role not in CHAT_ROLES:
            raise InvalidInput(f"{where}.role: expected one of {', '.join(CHAT_ROLES)}, got {shown(role)}",
                               param=f"{where}.role")
        content = m.get("content")
        if content is None and role != "assistant":
            raise InvalidInput(f"{where}.content: required for role {shown(role)}", param=f"{where}.content")
        msg = dict(m)
        msg["content"] = "" if content is None else _content(content, where)
        if role == "assistant" and m.get("tool_calls") is not None:
            msg["tool_calls"] = _history_calls(m["tool_calls"], where)
        if role == "developer":  # OpenAI's newer name for system instructions
            msg["role"] = "system"
        out.append(msg)
    return out


def parse_chat(body: Any, *, max_n: int) -> ChatRequest:
    b = _obj(body)
    _known(b, "chat")
    messages = _messages(b)
    logprobs = _bool(b, "logprobs")
    top = _int(b, "top_logprobs", None, 0, MAX_LOGPROBS)
    if top is not None and not logprobs:
        raise InvalidInput("top_logprobs: only allowed when logprobs is true", param="top_logprobs")
    max_tokens = _int(b, "max_completion_tokens", None, 1)
    if max_tokens is None:
        max_tokens = _int(b, "max_tokens", None, 1)
    gen = _generation(b, max_n=max_n, logprobs=(top or 0) if logprobs else None, prompt_logprobs=False,
                      max_tokens=max_tokens, tools=parse_tools(b))
    gen.top_logprobs = top
    return ChatRequest(gen, messages, logprobs)


# -- embeddings ----------------------------------------------------------------------------------
ENCODING_FORMATS = ("float", "base64")


@dataclass
class EmbeddingRequest:
    model: str | None
    inputs: list[str | list[int]]
    encoding_format: str
    dimensions: int | None


def parse_embeddings(body: Any) -> EmbeddingRequest:
    b = _obj(body)
    _known(b, "embeddings")
    raw = b.get("input")
    if raw is None:
        raise InvalidInput("input: required (a string, an array of strings, or token ids)", param="input")
    inputs: list[str | list[int]] | None = None
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw:
        if all(isinstance(x, str) for x in raw):
            inputs = list(raw)
        elif all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
            inputs = [list(raw)]
        elif all(isinstance(x, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in x) for x in raw):
            inputs = [list(x) for x in raw]
    if inputs is None:
        raise InvalidInput(
            "input: expected a string, an array of strings, an array of token ids or an array of such arrays, "
            f"got {_kind(raw)}" + (" (empty)" if raw == [] else ""),
            param="input",
        )
    fmt = b.get("encoding_format") or "float"
    if fmt not in ENCODING_FORMATS:
        raise InvalidInput(f"encoding_format: expected float or base64, got {shown(fmt)}", param="encoding_format")
    dims = _int(b, "dimensions", None, 1)
    return EmbeddingRequest(_model(b), inputs, fmt, dims)


def embedding_item(index: int, vector: np.ndarray, encoding_format: str) -> dict[str, Any]:
    data: Any = (
        base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
        if encoding_format == "base64" else np.asarray(vector, dtype=np.float32)  # float32 digits in the JSON
    )
    return {"object": "embedding", "index": index, "embedding": data}


def embeddings_response(model: str, vectors: np.ndarray, fmt: str, prompt_tokens: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [embedding_item(i, v, fmt) for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# -- responses --------------------------------------------------------------------------------------
def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def explanation(tokens: list[str], ids: list[int], completion_tokens: int, found: TokenAttributions,
                steps: int) -> dict[str, Any]:
    """The ``explanation`` object of an explained completion: one attribution per prompt token."""
    values = [float(v) for v in found.values]
    difference = found.score - found.baseline_score
    return {
        "method": "integrated_gradients",
        "target": "completion_logprob",
        "baseline": "zero_embedding",
        "steps": steps,
        "tokens": tokens,
        "token_ids": ids,
        "attributions": values,
        "completion_tokens": completion_tokens,
        "score": found.score,
        "baseline_score": found.baseline_score,
        "completeness_gap": sum(values) - difference,
    }


def models_list(names: list[str], created: int, lengths: dict[str, int | None] | None = None,
                owner: str = "modeldeploy") -> dict[str, Any]:
    return {"object": "list", "data": [model_card(n, created, (lengths or {}).get(n), owner) for n in names]}


def model_card(name: str, created: int, max_model_len: int | None = None, owner: str = "modeldeploy") -> dict[str, Any]:
    """A model card; text models (loaded) carry ``max_model_len``, as vLLM's do."""
    card: dict[str, Any] = {"id": name, "object": "model", "created": created, "owned_by": owner}
    if max_model_len is not None:
        card["max_model_len"] = max_model_len
    return card


# -- tokenize and detokenize (vLLM's form) ------------------------------------------------------------
@dataclass
class TokenizeRequest:
    model: str | None
    #: the text to tokenize, or (messages) None
    prompt: str | None
    messages: list[dict[str, Any]] | None
    add_special_tokens: bool
    add_generation_prompt: bool
    tools: Tools | None
    return_token_strs: bool


def _bool_or(body: dict[str, Any], name: str, default: bool) -> bool:
    return _bool(body, name) if body.get(name) is not None else default


def parse_tokenize(body: Any) -> TokenizeRequest:
    """``POST /tokenize``: a prompt (special tokens added by default), or chat messages rendered by the
    model's template (special tokens not added again by default)."""
    b = _obj(body)
    chat = "messages" in b
    _known(b, "tokenize_chat" if chat else "tokenize_prompt")
    if chat:
        tools = parse_tools(b) if b.get("tools") is not None else None
        return TokenizeRequest(_model(b), None, _messages(b), _bool_or(b, "add_special_tokens", False),
                               _bool_or(b, "add_generation_prompt", True), tools,
                               _bool(b, "return_token_strs"))
    prompt = b.get("prompt")
    if not isinstance(prompt, str):
        raise InvalidInput(f"prompt: expected a string (or give messages), got {_kind(prompt)}", param="prompt")
    return TokenizeRequest(_model(b), prompt, None, _bool_or(b, "add_special_tokens", True), False, None,
                           _bool(b, "return_token_strs"))


def parse_detokenize(body: Any) -> tuple[str | None, list[int]]:
    """``POST /detokenize``: (the model, the token ids)."""
    b = _obj(body)
    _known(b, "detokenize")
    tokens = b.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise InvalidInput(f"tokens: expected an array of token ids, got {_kind(tokens)}", param="tokens")
    return _model(b), list(tokens)


def now() -> int:
    return int(time.time())


# -- logprobs -----------------------------------------------------------------------------------------
@dataclass
class TokenLogprob:
    """One token's logprob entry: its text, logprob and the top alternatives (text, logprob)."""

    text: str
    logprob: float | None
    top: list[tuple[str, float]] | None


def completion_logprobs(entries: list[TokenLogprob], start_offset: int = 0) -> dict[str, Any]:
    """The legacy completions ``logprobs`` object (text offsets count from ``start_offset``)."""
    offsets, pos = [], start_offset
    for e in entries:
        offsets.append(pos)
        pos += len(e.text)
    return {
        "tokens": [e.text for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [None if e.top is None else dict(e.top) for e in entries],
        "text_offset": offsets,
    }


def chat_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    """The chat ``logprobs`` object: ``{"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}``."""
    return {
        "content": [
            {
                "token": e.text,
                "logprob": e.logprob,
                "bytes": list(e.text.encode("utf-8")),
                "top_logprobs": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in (e.top or [])
                ],
            }
            for e in entries
        ],
        "refusal": None,
    }


def context_error(max_len: int, prompt_tokens: int, max_tokens: int | None, param: str) -> InvalidInput:
    asked = f"{prompt_tokens} in the {'messages' if param == 'messages' else 'prompt'}"
    total = prompt_tokens + (max_tokens or 0)
    detail = f"{total} tokens ({asked}, {max_tokens} for the completion)" if max_tokens else f"{prompt_tokens} tokens ({asked})"
    return InvalidInput(
        f"This model's maximum context length is {max_len} tokens. However, you requested {detail}. "
        f"Please reduce the length of the {'messages' if param == 'messages' else 'prompt'} or completion.",
        param=param,
        code="context_length_exceeded",
    )
