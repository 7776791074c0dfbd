"""OpenAI-style request checks: what is accepted, and the field and message of each refusal."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from modelserver.codecs import openai as codec
from modelserver.errors import InvalidInput


def refused(fn, body, **kw) -> InvalidInput:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as info:
        fn(body, **kw)
    return info.value


def test_completion_defaults_and_fields() -> None:
    r = codec.parse_completion({"model": "m", "prompt": "hi"}, max_n=4)
    assert r.prompts == ["hi"] and r.gen.n == 1 and r.gen.max_tokens == 16 and not r.gen.stream
    r = codec.parse_completion(
        {"prompt": ["a", "b"], "max_tokens": 5, "temperature": 0, "top_p": 0.5, "n": 2, "stop": "x", "seed": 7,
         "stream": True, "stream_options": {"include_usage": True}, "echo": True, "logprobs": 2}, max_n=4)
    assert r.prompts == ["a", "b"] and r.gen.params.temperature == 0.0 and r.gen.params.top_p == 0.5
    assert r.gen.params.stop == ("x",) and r.gen.seed == 7 and r.gen.include_usage and r.echo
    assert r.gen.params.logprobs == 2 and r.gen.params.prompt_logprobs
    assert codec.parse_completion({"prompt": [1, 2, 3]}, max_n=1).prompts == [[1, 2, 3]]
    assert codec.parse_completion({"prompt": [[1], [2, 3]]}, max_n=1).prompts == [[1], [2, 3]]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({}, "prompt", "required"),
        ({"prompt": []}, "prompt", "empty"),
        ({"prompt": 5}, "prompt", "an integer"),
        ({"prompt": "x", "n": 9}, "n", "at most 4"),
        ({"prompt": "x", "n": 0}, "n", "at least 1"),
        ({"prompt": "x", "temperature": 3}, "temperature", "from 0 to 2"),
        ({"prompt": "x", "top_p": 0}, "top_p", "more than 0"),
        ({"prompt": "x", "max_tokens": "ten"}, "max_tokens", "a string"),
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options", "stream is true"),
        ({"prompt": "x", "stream": True, "stream_options": {"continuous_usage_stats": True}}, "stream_options",
         "continuous_usage_stats: not a field"),
        ({"prompt": "x", "logprobs": 50}, "logprobs", "between 0 and 20"),
        ({"prompt": "x", "seed": 1.5}, "seed", "an integer"),
        ({"prompt": "x", "presence_penalty": 1}, "presence_penalty", "not supported"),
    ],
)
def test_completion_refusals(body: dict, param: str, words: str) -> None:
    err = refused(codec.parse_completion, body, max_n=4)
    assert err.param == param and words in err.message, err.message


def test_chat_messages() -> None:
    r = codec.parse_chat({"messages": [{"role": "developer", "content": "be brief"},
                                       {"role": "user", "content": [{"type": "text", "text": "hi "},
                                                                    {"type": "text", "text": "there"}]}],
                          "max_completion_tokens": 3, "max_tokens": 9, "logprobs": True, "top_logprobs": 2}, max_n=1)
    assert r.messages[0]["role"] == "system" and r.messages[1]["content"] == "hi there"
    assert r.gen.max_tokens == 3 and r.gen.params.logprobs == 2 and r.logprobs
    assert codec.parse_chat({"messages": [{"role": "user", "content": "x"}]}, max_n=1).gen.max_tokens is None


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({}, "messages", "required"),
        ({"messages": []}, "messages", "empty"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "expected one of"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "required"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content", "text only"),
        ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs", "logprobs is true"),
    ],
)
def test_chat_refusals(body: dict, param: str, words: str) -> None:
    err = refused(codec.parse_chat, body, max_n=4)
    assert err.param == param and words in err.message, err.message


def test_embeddings() -> None:
    r = codec.parse_embeddings({"input": "a"})
    assert r.inputs == ["a"] and r.encoding_format == "float"
    assert codec.parse_embeddings({"input": [[1, 2], [3]], "encoding_format": "base64"}).inputs == [[1, 2], [3]]
    assert refused(codec.parse_embeddings, {"input": "a", "encoding_format": "hex"}).param == "encoding_format"
    assert refused(codec.parse_embeddings, {"input": []}).param == "input"
    assert refused(codec.parse_embeddings, {}).param == "input"
    v = np.array([1.5, -2.0], dtype=np.float32)
    item = codec.embedding_item(0, v, "base64")
    assert np.array_equal(np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4"), v)
    assert codec.embedding_item(0, v, "float")["embedding"].tolist() == [1.5, -2.0]


def test_context_error_and_envelope() -> None:
    err = codec.context_error(128, 100, 50, "prompt")
    assert err.code == "context_length_exceeded" and err.status == 400
    assert "maximum context length is 128 tokens" in err.message and "150 tokens" in err.message
    body = err.openai_body()["error"]
    assert body == {"message": err.message, "type": "invalid_request_error", "param": "prompt",
                    "code": "context_length_exceeded"}


def test_logprobs_bodies() -> None:
    entries = [codec.TokenLogprob("He", -0.5, [("He", -0.5), ("A", -1.0)]), codec.TokenLogprob("llo", -0.1, [])]
    lp = codec.completion_logprobs(entries, 3)
    assert lp["tokens"] == ["He", "llo"] and lp["text_offset"] == [3, 5] and lp["top_logprobs"][0] == {"He": -0.5, "A": -1.0}
    chat = codec.chat_logprobs(entries)["content"][0]
    assert chat["bytes"] == list(b"He") and chat["top_logprobs"][1] == {"token": "A", "logprob": -1.0, "bytes": [65]}
