"""Structured output and tool calls: the OpenAI fields checked, their grammars, and tool calls read back.

``response_format`` (``json_object``, ``json_schema``) and ``tools`` with ``tool_choice`` become a
grammar for llguidance (compact JSON, properties in the schema's order), which the generation
engine turns into a token mask at every step. A tool call is written in the Hermes form many open
models are trained on::

    <tool_call>
    {"name":"get_weather","arguments":{"city":"Paris"}}
    </tool_call>

one after another, separated by a newline. ``read_tool_calls`` reads that text back into calls,
from a whole answer or from any prefix of it, so a streamed answer's deltas are differences
between successive reads of the same function, and their concatenation is the non-streamed
answer by construction.

Pure functions: no model, no IO. Refusals are ``InvalidInput`` naming the field.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llguidance

from modelserver.errors import InvalidInput, shown

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

CALL_OPEN = "<tool_call>\n"
CALL_CLOSE = "\n</tool_call>"
CALL_SEPARATOR = "\n"
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: JSON as the grammar writes it: no whitespace between tokens (short outputs, whatever the model)
_COMPACT: JsonCompileOptions = {"whitespace_flexible": False}
TOOL_CHOICES = ("none", "auto", "required")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def _only(obj: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(k for k in obj if k not in allowed)
    if unknown:
        raise InvalidInput(f"{where}.{unknown[0]}: not a field this server reads (it reads {', '.join(allowed)})",
                           param=where.split(".")[0].split("[")[0])


# -- response_format --------------------------------------------------------------------------------
def parse_response_format(value: Any) -> dict[str, Any] | None:
    """The JSON schema the answer must fit (``{"type": "object"}`` for json_object), or None for text."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"response_format: expected an object, got {_kind(value)}", param="response_format")
    kind = value.get("type")
    if kind == "text":
        _only(value, ("type",), "response_format")
        return None
    if kind == "json_object":
        _only(value, ("type",), "response_format")
        return {"type": "object"}
    if kind == "json_schema":
        _only(value, ("type", "json_schema"), "response_format")
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidInput(f"response_format.json_schema: expected an object with name and schema, got "
                               f"{_kind(spec)}", param="response_format")
        _only(spec, ("name", "description", "schema", "strict"), "response_format.json_schema")
        name = spec.get("name")
        if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
            raise InvalidInput("response_format.json_schema.name: expected a name of letters, digits, _ and - "
                               f"(at most 64), got {shown(name)}", param="response_format")
        if "strict" in spec and not isinstance(spec["strict"], (bool, type(None))):
            raise InvalidInput(f"response_format.json_schema.strict: expected true or false, got "
                               f"{_kind(spec['strict'])}", param="response_format")
        schema = spec.get("schema", {"type": "object"})
        if not isinstance(schema, dict):
            raise InvalidInput(f"response_format.json_schema.schema: expected a JSON schema (an object), got "
                               f"{_kind(schema)}", param="response_format")
        return schema
    raise InvalidInput(f"response_format.type: expected text, json_object or json_schema, got {shown(kind)}",
                       param="response_format")


def json_grammar(schema: dict[str, Any]) -> str:
    """The grammar of compact JSON fitting ``schema`` (checked against a tokenizer later)."""
    return str(llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=_COMPACT))


# -- tools ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Tools:
    """The request's tools, and how it wants them used."""

    tools: tuple[Tool, ...]
    #: none | auto | required | the name of the one function to call
    choice: str
    #: several calls in one answer (``parallel_tool_calls``)
    parallel: bool = True

    @property
    def constrained(self) -> bool:
        return self.choice != "none"

    def for_template(self) -> list[dict[str, Any]]:
        """The tools as chat templates read them (``tools`` in transformers' apply_chat_template)."""
        return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.parameters}} for t in self.tools]


def _tool(value: Any, i: int) -> Tool:
    where = f"tools[{i}]"
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: expected {{\"type\": \"function\", \"function\": {{...}}}}, got {_kind(value)}",
                           param="tools")
    _only(value, ("type", "function"), where)
    if value.get("type") != "function":
        raise InvalidInput(f"{where}.type: expected function, got {shown(value.get('type'))}", param="tools")
    fn = value.get("function")
    if not isinstance(fn, dict):
        raise InvalidInput(f"{where}.function: expected an object with a name, got {_kind(fn)}", param="tools")
    _only(fn, ("name", "description", "parameters", "strict"), f"{where}.function")
    name = fn.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise InvalidInput(f"{where}.function.name: expected a name of letters, digits, _ and - (at most 64), got "
                           f"{shown(name)}", param="tools")
    description = fn.get("description", "")
    if not isinstance(description, str):
        raise InvalidInput(f"{where}.function.description: expected a string, got {_kind(description)}", param="tools")
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}.function.parameters: expected a JSON schema (an object), got {_kind(params)}",
                           param="tools")
    if "strict" in fn and not isinstance(fn["strict"], (bool, type(None))):
        raise InvalidInput(f"{where}.function.strict: expected true or false, got {_kind(fn['strict'])}", param="tools")
    return Tool(name, description, params)


def parse_tools(body: dict[str, Any]) -> Tools | None:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` checked (None: no tools)."""
    raw, choice, parallel = body.get("tools"), body.get("tool_choice"), body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidInput(f"parallel_tool_calls: expected true or false, got {_kind(parallel)}",
                           param="parallel_tool_calls")
    if raw is None or raw == []:
        if choice not in (None, "none"):
            raise InvalidInput(f"tool_choice: {shown(choice)} needs tools; none are given", param="tool_choice")
        return None
    if not isinstance(raw, list):
        raise InvalidInput(f"tools: expected an array of function tools, got {_kind(raw)}", param="tools")
    tools = tuple(_tool(t, i) for i, t in enumerate(raw))
    names = [t.name for t in tools]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise InvalidInput(f"tools: the function name {dup!r} is given twice", param="tools")
    if choice is None:
        mode = "auto"
    elif isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise InvalidInput(f"tool_choice: expected none, auto, required or {{\"type\": \"function\", "
                               f"\"function\": {{\"name\": ...}}}}, got {shown(choice)}", param="tool_choice")
        mode = choice
    elif isinstance(choice, dict):
        _only(choice, ("type", "function"), "tool_choice")
        fn = choice.get("function")
        if choice.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidInput(f"tool_choice: expected {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, "
                               f"got {shown(choice)}", param="tool_choice")
        _only(fn, ("name",), "tool_choice.function")
        if fn["name"] not in names:
            raise InvalidInput(f"tool_choice.function.name: {fn['name']!r} is not one of the tools "
                               f"({', '.join(names)})", param="tool_choice")
        mode = fn["name"]
    else:
        raise InvalidInput(f"tool_choice: expected a string or an object, got {_kind(choice)}", param="tool_choice")
    return Tools(tools, mode, True if parallel is None else parallel)


def _call_schema(tools: list[Tool]) -> dict[str, Any]:
    """One call: ``{"name": NAME, "arguments": {...}}`` of any of ``tools``."""
    forms = [{"type": "object", "properties": {"name": {"const": t.name}, "arguments": t.parameters},
              "required": ["name", "arguments"], "additionalProperties": False} for t in tools]
    schema: dict[str, Any] = forms[0] if len(forms) == 1 else {"anyOf": forms}
    return {**schema, "x-guidance": _COMPACT}


def tools_grammar(tools: Tools) -> str | None:
    """The grammar of the answer: tool calls only (required, a named function), or text that does not
    start with ``<`` or tool calls (auto); None for tool_choice none."""
    if not tools.constrained:
        return None
    chosen = [t for t in tools.tools if t.name == tools.choice] or list(tools.tools)
    call = f"call: {json.dumps(CALL_OPEN)} %json {json.dumps(_call_schema(chosen))} {json.dumps(CALL_CLOSE)}"
    calls = f"calls: call ({json.dumps(CALL_SEPARATOR)} call)*" if tools.parallel else "calls: call"
    if tools.choice == "auto":
        start = "start: calls | TEXT | EMPTY\nTEXT: /[^<](.|\\n)*/\nEMPTY: \"\""
    else:
        start = "start: calls"
    return str(llguidance.grammar_from("lark", f"{start}\n{calls}\n{call}\n"))


# -- reading tool calls back --------------------------------------------------------------------------
@dataclass
class ToolCallsRead:
    """What a (partial) answer holds: text content, or tool calls (content None)."""

    content: str | None
    #: each call's name and its arguments so far (a JSON text, complete when ``done``)
    calls: list[tuple[str, str, bool]] = field(default_factory=list)


def _string_end(text: str, start: int) -> int:
    """The index just past the JSON string opening at ``start`` (-1: not closed yet)."""
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    return -1


def _value_end(text: str, start: int) -> int:
    """The index just past the JSON object or array opening at ``start`` (-1: not closed yet)."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c == '"':
            end = _string_end(text, i)
            if end < 0:
                return -1
            i = end
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def read_tool_calls(text: str) -> ToolCallsRead:
    """The calls in ``text`` as far as it goes (an answer whose tools were constrained): an answer that
    starts with ``<`` is tool calls (text content cannot, under the grammar), any other is content."""
    if not text.startswith("<"):
        return ToolCallsRead(text)
    read = ToolCallsRead(None)
    head = CALL_OPEN + '{"name":'
    pos = 0
    while True:
        if not text.startswith(head, pos):
            return read  # the next call has not started, or the text is cut before its name
        name_at = pos + len(head)
        name_end = _string_end(text, name_at) if text.startswith('"', name_at) else -1
        if name_end < 0:
            return read
        name = json.loads(text[name_at:name_end])
        args_at = name_end + len(',"arguments":')
        if not text.startswith(',"arguments":', name_end) or args_at >= len(text):
            read.calls.append((name, "", False))
            return read
        args_end = _value_end(text, args_at)
        if args_end < 0:
            read.calls.append((name, text[args_at:], False))
            return read
        read.calls.append((name, text[args_at:args_end], True))
        pos = args_end + len("}" + CALL_CLOSE + CALL_SEPARATOR)


def _call_id() -> str:
    return f"call_{os.urandom(12).hex()}"


def tool_calls_body(calls: list[tuple[str, str, bool]], ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The ``tool_calls`` of a chat message (``ids``: the ones a stream already gave them)."""
    return [{"id": ids[i] if ids and i < len(ids) else _call_id(), "type": "function",
             "function": {"name": name, "arguments": args}} for i, (name, args, _) in enumerate(calls)]


class ToolCallStream:
    """The deltas of one streamed choice whose tools were constrained: its content as it comes, or
    its tool calls (a call's id and name once its name is whole, then its arguments piece by piece).
    Each push reads the whole text so far with ``read_tool_calls``, as the non-streamed answer does."""

    def __init__(self) -> None:
        self.text = ""
        #: per call sent: its id, and how much of its arguments went out
        self.ids: list[str] = []
        self._sent: list[int] = []

    def push(self, text: str) -> list[dict[str, Any]]:
        self.text += text
        read = read_tool_calls(self.text)
        if read.content is not None:
            return [{"content": text}] if text else []
        deltas: list[dict[str, Any]] = []
        for i, (name, args, _) in enumerate(read.calls):
            if i == len(self.ids):
                self.ids.append(_call_id())
                self._sent.append(0)
                deltas.append({"tool_calls": [{"index": i, "id": self.ids[i], "type": "function",
                                               "function": {"name": name, "arguments": ""}}]})
            if len(args) > self._sent[i]:
                deltas.append({"tool_calls": [{"index": i, "function": {"arguments": args[self._sent[i]:]}}]})
                self._sent[i] = len(args)
        return deltas
