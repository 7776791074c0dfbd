"""Structured output and tool calls through the official ``openai`` SDK, against the tests' tiny Llama.

Its weights are random: whatever shape the answers have comes from the grammar alone, which is what
these tests prove. Every answer that stops is parsed and validated with ``jsonschema``; the streamed
answer equals the non-streamed one for the same seed (content, tool call names and arguments, finish
reason, usage); a constrained and a free sequence decoded in one batch each equal their solo runs.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
import requests

from tests import hf_models
from tests.server.conftest import Server

SCHEMAS: dict[str, dict[str, Any]] = {
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog", "fish"]},
                                                     "legs": {"type": "integer", "minimum": 0, "maximum": 8}},
                    "required": ["kind"], "additionalProperties": False},
        },
        "required": ["name", "age", "pet"],
        "additionalProperties": False,
    },
    "order": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                "type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{3}$"},
                                                 "qty": {"type": "integer", "minimum": 1, "maximum": 9}},
                "required": ["sku", "qty"], "additionalProperties": False}},
            "express": {"type": "boolean"},
            "status": {"enum": ["new", "paid", "shipped"]},
        },
        "required": ["items", "status"],
        "additionalProperties": False,
    },
    "flags": {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "level": {"enum": [1, 2, 3]},
                       "note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 6}]}},
        "required": ["ok", "level", "note"],
        "additionalProperties": False,
    },
}

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                                                        "unit": {"enum": ["c", "f"]}},
                       "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add two numbers",
        "parameters": {"type": "object", "properties": {"x": {"type": "integer", "minimum": -99, "maximum": 99},
                                                        "y": {"type": "integer", "minimum": -99, "maximum": 99}},
                       "required": ["x", "y"], "additionalProperties": False}}},
]
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
SEEDS = range(12)


@pytest.fixture(scope="module")
def llama(start_server, model_dir: Path) -> Server:
    path = hf_models.make_tiny_llama_with_tools(model_dir / "tiny-llama-tools")
    return start_server(path, "--name", "tools-llm", "--protocol", "openai", "--max-sequences", "4")


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url("/v1"), api_key="unused", max_retries=0)


def json_schema_format(name: str) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True}}


def streamed(server: Server, **kw: Any) -> dict[str, Any]:
    """The streamed answer gathered: content, tool calls (name, arguments) by index, finish reason, usage."""
    content, calls, finish, usage = "", {}, None, None
    for chunk in client(server).chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = entry["id"] or call.id
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    return {"content": content, "calls": [(c["name"], c["arguments"]) for _, c in sorted(calls.items())],
            "ids": [c["id"] for _, c in sorted(calls.items())], "finish": finish, "usage": usage}


def whole(server: Server, **kw: Any) -> dict[str, Any]:
    r = client(server).chat.completions.create(**kw)
    choice = r.choices[0]
    calls = [(t.function.name, t.function.arguments) for t in choice.message.tool_calls or []]
    return {"content": choice.message.content or "", "calls": calls, "finish": choice.finish_reason,
            "usage": r.usage.model_dump(), "message": choice.message}


# -- response_format --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_json_schema_answers_parse_and_validate_for_every_seed(llama: Server, name: str) -> None:
    stopped = 0
    for seed in SEEDS:
        settings = [{"temperature": 1.0}, {"temperature": 0.0}, {"temperature": 1.5, "top_p": 0.6}][seed % 3]
        r = client(llama).chat.completions.create(model="tools-llm", messages=MESSAGES, seed=seed, max_tokens=160,
                                                  response_format=json_schema_format(name), **settings)
        choice = r.choices[0]
        assert choice.finish_reason in ("stop", "length"), choice
        if choice.finish_reason == "stop":
            jsonschema.validate(json.loads(choice.message.content), SCHEMAS[name])
            stopped += 1
    assert stopped >= len(SEEDS) * 3 // 4, stopped  # the schemas bound every string: most answers end


def test_json_object_and_completions_answers_are_json_objects(llama: Server) -> None:
    for seed in SEEDS:
        r = client(llama).chat.completions.create(model="tools-llm", messages=MESSAGES, seed=seed, max_tokens=150,
                                                  response_format={"type": "json_object"})
        if r.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(r.choices[0].message.content), dict)
        c = client(llama).completions.create(model="tools-llm", prompt="A record:", seed=seed, max_tokens=150,
                                             extra_body={"response_format": json_schema_format("flags")})
        assert c.choices[0].finish_reason in ("stop", "length")
        if c.choices[0].finish_reason == "stop":
            jsonschema.validate(json.loads(c.choices[0].text), SCHEMAS["flags"])


def test_n_choices_each_follow_the_schema(llama: Server) -> None:
    r = client(llama).chat.completions.create(model="tools-llm", messages=MESSAGES, seed=3, n=3, max_tokens=160,
                                              response_format=json_schema_format("person"))
    assert len(r.choices) == 3
    for choice in r.choices:
        if choice.finish_reason == "stop":
            jsonschema.validate(json.loads(choice.message.content), SCHEMAS["person"])
    assert len({c.message.content for c in r.choices}) > 1  # each choice samples on its own


def test_max_tokens_cuts_the_answer_with_finish_reason_length(llama: Server) -> None:
    r = client(llama).chat.completions.create(model="tools-llm", messages=MESSAGES, seed=1, max_tokens=3,
                                              response_format=json_schema_format("person"))
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content.startswith("{")


# -- tools --------------------------------------------------------------------------------------------------
def test_required_tool_calls_have_ids_names_and_valid_arguments(llama: Server) -> None:
    seen = set()
    for seed in SEEDS:
        r = client(llama).chat.completions.create(model="tools-llm", messages=MESSAGES, seed=seed, max_tokens=120,
                                                  tools=TOOLS, tool_choice="required")
        choice = r.choices[0]
        assert choice.finish_reason in ("tool_calls", "length")
        if choice.finish_reason == "length":
            continue
        assert choice.message.content is None and choice.message.tool_calls
        for call in choice.message.tool_calls:
            assert call.type == "function" and call.id.startswith("call_")
            jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])
            seen.add(call.function.name)
        assert len({c.id for c in choice.message.tool_calls}) == len(choice.message.tool_calls)
    assert seen == {"get_weather", "add"}


def test_a_named_function_and_parallel_tool_calls_false(llama: Server) -> None:
    for seed in SEEDS:
        r = client(llama).chat.completions.create(
            model="tools-llm", messages=MESSAGES, seed=seed, max_tokens=120, tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_weather"}}, parallel_tool_calls=False)
        choice = r.choices[0]
        if choice.finish_reason == "length":
            continue
        assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), PARAMETERS["get_weather"])


def test_auto_answers_with_text_or_calls_and_none_with_text(llama: Server) -> None:
    for seed in SEEDS:
        r = client(llama).chat.completions.create(model="tools-llm", messages=MESSAGES, seed=seed, max_tokens=60,
                                                  tools=TOOLS, tool_choice="auto")
        choice = r.choices[0]
        if choice.message.tool_calls:
            assert choice.message.content is None
            for call in choice.message.tool_calls:
                if choice.finish_reason == "tool_calls":
                    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])
        else:
            assert not choice.message.content.startswith("<")
        none = client(llama).chat.completions.create(model="tools-llm", messages=MESSAGES, seed=seed, max_tokens=8,
                                                     tools=TOOLS, tool_choice="none")
        assert none.choices[0].message.tool_calls in (None, []) and none.choices[0].finish_reason in ("stop", "length")


def test_a_tool_result_round_trip_in_the_history(llama: Server) -> None:
    first = client(llama).chat.completions.create(model="tools-llm", messages=MESSAGES, seed=2, max_tokens=120,
                                                  tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    call = first.choices[0].message.tool_calls[0]
    history = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21})},
    ]
    again = client(llama).chat.completions.create(model="tools-llm", messages=history, seed=2, max_tokens=10,
                                                  tools=TOOLS)
    # the history is in the prompt, as the template renders it: the call, then the result
    assert again.usage.prompt_tokens > first.usage.prompt_tokens + 10
    rendered = requests.post(llama.url("/tokenize"), json={"model": "tools-llm", "messages": history,
                                                           "tools": TOOLS}, timeout=30).json()
    text = requests.post(llama.url("/detokenize"), json={"tokens": rendered["tokens"]}, timeout=30).json()["prompt"]
    assert f'<tool_call>\n{{"name": "{call.function.name}"' in text and '<tool_response>\n{"temperature": 21}' in text
    assert rendered["count"] == again.usage.prompt_tokens


# -- streaming equals non-streaming ------------------------------------------------------------------------
CASES: list[dict[str, Any]] = [
    {"response_format": json_schema_format("person")},
    {"response_format": json_schema_format("order")},
    {"response_format": {"type": "json_object"}},
    {"tools": TOOLS, "tool_choice": "required"},
    {"tools": TOOLS, "tool_choice": "auto"},
    {"tools": TOOLS[:1], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False},
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_stream_equals_the_whole_answer(llama: Server, case: int) -> None:
    for seed in range(8):
        kw = {"model": "tools-llm", "messages": MESSAGES, "seed": seed, "max_tokens": 100, **CASES[case]}
        one, parts = whole(llama, **kw), streamed(llama, **kw)
        assert parts["content"] == one["content"], (seed, parts, one)
        assert parts["calls"] == one["calls"], (seed, parts, one)
        assert parts["finish"] == one["finish"] and parts["usage"] == one["usage"], (seed, parts, one)
        assert all(i and i.startswith("call_") for i in parts["ids"])


# -- one batch ----------------------------------------------------------------------------------------------
def test_constrained_and_free_sequences_in_one_batch_each_equal_their_solo_run(llama: Server) -> None:
    constrained = {"model": "tools-llm", "messages": MESSAGES, "seed": 7, "max_tokens": 80,
                   "response_format": json_schema_format("order")}
    free = {"model": "tools-llm", "messages": MESSAGES, "seed": 9, "max_tokens": 80}
    solo = [whole(llama, **constrained), whole(llama, **free)]
    before = requests.get(llama.url("/metrics"), timeout=5).text
    with cf.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda kw: whole(llama, **kw), [constrained, free, constrained, free]))
    for i, answer in enumerate(together):
        assert (answer["content"], answer["finish"]) == (solo[i % 2]["content"], solo[i % 2]["finish"])
    after = requests.get(llama.url("/metrics"), timeout=5).text
    assert batched_steps(after) > batched_steps(before)  # some steps decoded more than one sequence


def batched_steps(metrics: str) -> float:
    """Decode steps of more than one row (the batch-size histogram's count above its first bucket)."""
    count = one = 0.0
    for line in metrics.splitlines():
        if line.startswith('modelserver_batch_size_count{model="tools-llm"}'):
            count = float(line.split()[-1])
        if line.startswith('modelserver_batch_size_bucket{le="1.0",model="tools-llm"}'):
            one = float(line.split()[-1])
    return count - one


def test_metrics_count_constrained_sequences_and_mask_time(llama: Server) -> None:
    client(llama).chat.completions.create(model="tools-llm", messages=MESSAGES, seed=1, max_tokens=20,
                                          response_format={"type": "json_object"})
    text = requests.get(llama.url("/metrics"), timeout=5).text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if not line.startswith("#")}
    assert values['modelserver_constrained_sequences_total{model="tools-llm"}'] >= 1
    assert values['modelserver_grammar_mask_seconds_count{model="tools-llm"}'] >= 1


# -- refusals ------------------------------------------------------------------------------------------------
def error_of(server: Server, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    r = requests.post(server.url(path), json={"model": "tools-llm", **body}, timeout=30)
    return r.status_code, r.json()["error"]


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "if": {"type": "object"}, "then": {}, "else": {}}}}}, "response_format", '"else", "if", "then"'),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "array", "uniqueItems": True}}}}, "response_format", "uniqueItems"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "string", "format": "credit-card"}}}}, "response_format", "credit-card"),
    ({"response_format": {"type": "xml"}}, "response_format", "expected text, json_object or json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}, "response_format", "name"),
    ({"response_format": {"type": "json_object", "schema": {}}}, "response_format", "response_format.schema"),
    ({"tools": [{"type": "retrieval"}]}, "tools", "tools[0].type: expected function"),
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools", "tools[0].function.name"),
    ({"tools": TOOLS + TOOLS[:1]}, "tools", "given twice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string", "pattern": "(?=x)"}}}}}],
      "tool_choice": "required"}, "tools", "look-around"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice",
     "'nope' is not one of the tools"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice", "expected none, auto, required"),
    ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls", "expected true or false"),
    ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "response_format", "set tool_choice to none"),
    ({"response_format": {"type": "json_object"}, "explain": True}, "explain", "not with response_format"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content", "'image_url'"),
    ({"functions": [{"name": "f"}]}, "functions", "not supported"),
])
def test_what_cannot_be_followed_is_a_400_naming_it(llama: Server, body: dict[str, Any], param: str,
                                                      words: str) -> None:
    status, err = error_of(llama, "/v1/chat/completions", {"messages": MESSAGES, **body})
    assert status == 400 and err["param"] == param and words in err["message"], err
    assert requests.get(llama.url("/v2/health/ready"), timeout=5).status_code == 200


def test_completions_read_response_format_but_not_tools(llama: Server) -> None:
    status, err = error_of(llama, "/v1/completions", {"prompt": "x", "tools": TOOLS})
    assert status == 400 and err["param"] == "tools" and "not a field this server reads on completions" in err["message"]


def test_content_given_as_text_parts_for_every_role(llama: Server) -> None:
    def parts(text: str) -> list[dict[str, str]]:
        return [{"type": "text", "text": text[:4]}, {"type": "text", "text": text[4:]}]

    as_parts = [{"role": "system", "content": parts("Be brief.")}, {"role": "user", "content": parts("Hello there")},
                {"role": "assistant", "content": parts("Hi! How can I help?")},
                {"role": "user", "content": parts("Weather?")}]
    as_text = [{"role": m["role"], "content": "".join(p["text"] for p in m["content"])} for m in as_parts]
    a = whole(llama, model="tools-llm", messages=as_parts, seed=4, max_tokens=6)
    b = whole(llama, model="tools-llm", messages=as_text, seed=4, max_tokens=6)
    assert (a["content"], a["usage"]) == (b["content"], b["usage"])
