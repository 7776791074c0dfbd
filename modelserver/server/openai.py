"""The OpenAI-style transport: completions, chat completions (both streamable), embeddings and models.

Bodies are checked by ``codecs.openai``; generation runs on the model's engine thread and its
events come back to the IO loop through an ``asyncio.Queue``. Streaming answers are Server-Sent
Events ending in ``data: [DONE]``; a client that goes away cancels its generation. Errors use the
OpenAI envelope ``{"error": {"message", "type", "param", "code"}}`` (``server.errors``). Models are
reached through the data plane and the ``Generator`` and ``Embedder`` interfaces alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

import numpy as np
from tornado.iostream import StreamClosedError

from modelserver import reading
from modelserver.codecs import jsonio
from modelserver.codecs import openai as codec
from modelserver.codecs.openai import TokenLogprob
from modelserver.codecs.structured import ToolCallStream, read_tool_calls, tool_calls_body
from modelserver.errors import ClientGone, InvalidInput, NotFound
from modelserver.interface import EMBED_SIGNATURE, Embedder, Event, Generator, SamplingParams, Servable
from modelserver.reading import OFFLOAD_BYTES
from modelserver.server.base import BaseHandler
from modelserver.server.context import ServerContext
from modelserver.server.errors import OPENAI, sse_error_event

T = TypeVar("T")
#: prompts up to this many characters are tokenized on the IO loop (about a millisecond)
INLINE_PROMPT_CHARS = 16384
#: no real tokenizer's tokens cover more characters than this on average: a text longer than the
#: context times this is checked from that long a prefix first
PROMPT_CHARS_PER_TOKEN = 64
#: tokens a prefix may gain at its cut (a word split in two) over the whole text's tokens there
PREFIX_SLACK_TOKENS = 16


class OpenAIBase(BaseHandler):
    protocol = "openai"
    error_form = OPENAI

    @property
    def large(self) -> bool:
        """A body long enough that reading and checking it belongs off the IO loop."""
        return len(self.body) >= OFFLOAD_BYTES

    async def parsed(self, parse: Callable[[Any], T]) -> T:
        """The body read and checked by ``parse`` (a codec's function, or a ``partial`` of one); a
        large one in the reader process (``reading.parse_large``), a piece at a time."""
        if not self.large:
            return parse(self.json_body())
        return await self.ctx.plane.reader.run(reading.parse_large, parse, self.body)

    async def model_named(self, name: str | None) -> Servable:
        repo = self.ctx.plane.repository
        if repo.root is not None and (name is not None or len(repo.models) != 1):
            return await self.use(name)  # a repository: any of its models, by name
        served = repo.default_name
        if name is not None and name != served:
            raise NotFound(
                f"The model `{name}` does not exist: this server serves `{served}`", param="model",
                code="model_not_found",
            )
        return await self.use(served)


@dataclass
class Choice:
    """One choice as it accumulates: text, logprob entries, token count and finish reason."""

    text: str = ""
    tokens: int = 0
    #: the generated token ids, an end-of-sequence token left out (what an explanation explains)
    ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    last_at: float = 0.0


class GenerationHandler(OpenAIBase):
    """What completions and chat share: tokens in, events out, streamed or gathered."""

    object_name = "text_completion"
    id_prefix = "cmpl"

    def initialize(self, ctx: ServerContext) -> None:
        super().initialize(ctx)
        #: each submitted request's generator and the engine's handle for it (to cancel it)
        self.requests: list[tuple[Generator, Any]] = []
        self.queue: asyncio.Queue[tuple[int, Event | None]] | None = None

    def on_connection_close(self) -> None:
        """The client went away: stop its generation and wake the handler waiting for tokens."""
        super().on_connection_close()
        self.cancel_all()
        if self.queue is not None:
            self.queue.put_nowait((-1, None))

    def on_finish(self) -> None:
        self.cancel_all()
        super().on_finish()

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, (ClientGone, StreamClosedError)):  # nobody to answer: just account for it
            if not self._finished:
                self.set_status(ClientGone.status, "Client Closed Request")
                self.finish()
            return
        super()._handle_request_exception(e)

    def cancel_all(self) -> None:
        for gen, req in self.requests:
            gen.engine.cancel(req)

    async def generator(self, name: str | None) -> Generator:
        servable = await self.model_named(name)
        if not isinstance(servable, Generator):
            raise InvalidInput(
                f"model {servable.name!r} is not a text-generation model: use /v1/embeddings", param="model"
            )
        return servable

    async def encode(self, gen: Generator, text: str, *, special: bool, param: str) -> list[int]:
        """Token ids of a prompt's text. A long text is tokenized on another thread (never on the IO
        loop), and one far past the context is refused from a bounded prefix: tokenizing megabytes
        costs seconds and gigabytes only to say no."""
        if len(text) <= INLINE_PROMPT_CHARS:
            return gen.codec.encode(text, special=special)
        loop = asyncio.get_running_loop()
        cap = gen.max_len * PROMPT_CHARS_PER_TOKEN
        if len(text) > cap:
            head = await loop.run_in_executor(None, lambda: gen.codec.encode(text[:cap], special=special))
            if len(head) > gen.max_len + PREFIX_SLACK_TOKENS:
                raise InvalidInput(
                    f"This model's maximum context length is {gen.max_len} tokens. However, the {param} is "
                    f"{len(text)} characters, and its first {cap} alone are {len(head)} tokens. Please reduce "
                    f"the length of the {param}.", param=param, code="context_length_exceeded",
                )
        return await loop.run_in_executor(None, lambda: gen.codec.encode(text, special=special))

    async def prompt_ids(self, gen: Generator, prompt: str | list[int], param: str) -> list[int]:
        if isinstance(prompt, str):
            ids = await self.encode(gen, prompt, special=True, param=param)
        else:
            if len(prompt) >= gen.max_len:  # too long whatever its ids: no need to look at each
                raise codec.context_error(gen.max_len, len(prompt), None, param)
            bad = next((t for t in prompt if t < 0 or t >= gen.codec.vocab_size), None)
            if bad is not None:
                raise InvalidInput(f"{param}: token id {bad} is outside the vocabulary (0..{gen.codec.vocab_size - 1})",
                                   param=param)
            ids = list(prompt)
        if not ids:
            raise InvalidInput(f"{param}: the prompt is empty: expected at least one token", param=param)
        return ids

    def fit(self, gen: Generator, ids: list[int], req: codec.Generation, param: str) -> SamplingParams:
        """The request's sampling params with max_tokens settled against the context length."""
        room = gen.max_len - len(ids)
        if room < 1 or (req.max_tokens is not None and req.max_tokens > room):
            raise codec.context_error(gen.max_len, len(ids), req.max_tokens, param)
        return replace(req.params, max_tokens=req.max_tokens if req.max_tokens is not None else room)

    async def check_grammar(self, gen: Generator, req: codec.Generation) -> None:
        """A grammar (response_format, tools) this model can follow, or a 400 naming what it cannot."""
        grammar = req.params.grammar
        if grammar is not None:
            await asyncio.get_running_loop().run_in_executor(None, gen.check_grammar, grammar, req.grammar_param)

    def explainable(self, ids: list[int], req: codec.Generation, param: str) -> None:
        """Refuse, before generating, a prompt too long to explain (explaining costs steps x a full pass)."""
        cap = self.ctx.settings.explain_max_prompt_tokens
        if req.explain and len(ids) > cap:
            raise InvalidInput(
                f"explain: the {param} is {len(ids)} tokens; this server explains prompts of at most {cap} "
                "tokens (the explain_max_prompt_tokens setting)", param="explain", code="context_length_exceeded",
            )

    async def explanation(self, gen: Generator, ids: list[int], choice: Choice) -> dict[str, Any]:
        """Integrated gradients of the choice's completion over the prompt, within an admission slot."""
        steps = self.ctx.settings.explain_steps
        found = await self.ctx.plane.dispatcher.call(lambda: gen.explain_completion(ids, choice.ids, steps))
        text = gen.codec.token_text
        return codec.explanation([text(t) for t in ids], ids, len(choice.ids), found, steps)

    def check_count(self, prompts: int, n: int) -> None:
        """Refuse, before any prompt is tokenized, more generations than the server queues."""
        codec.check_generations(prompts, n, self.ctx.settings.max_concurrent_requests)

    def start(self, gen: Generator, prompts: list[list[int]], params: list[SamplingParams], req: codec.Generation
              ) -> asyncio.Queue[tuple[int, Event | None]]:
        self.check_count(len(prompts), req.n)
        queue: asyncio.Queue[tuple[int, Event | None]] = asyncio.Queue()
        self.queue = queue
        loop = asyncio.get_running_loop()
        for p, (ids, sp) in enumerate(zip(prompts, params)):
            def emit(event: Event, p: int = p) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, (p, event))

            self.requests.append((gen, gen.engine.submit(ids, sp, n=req.n, seed=req.seed, emit=emit)))
        self.started_at = time.monotonic()
        self.first_token = True
        return queue

    def observe(self, gen: Generator, choice: Choice, event: Event) -> None:
        now = time.monotonic()
        m = self.ctx.metrics
        if self.first_token:
            self.first_token = False
            m.ttft.labels(gen.name).observe(now - self.started_at)
        elif choice.last_at:
            m.itl.labels(gen.name).observe(now - choice.last_at)
        choice.last_at = now

    def entry(self, gen: Generator, event: Event) -> TokenLogprob | None:
        if event.logprob is None or event.token is None or event.token in gen.eos:
            return None
        text = gen.codec.token_text
        return TokenLogprob(text(event.token), event.logprob, [(text(t), lp) for t, lp in event.top or []])

    async def events(self, queue: asyncio.Queue[tuple[int, Event | None]], n: int, total: int
                     ) -> AsyncIterator[tuple[int, Event]]:
        """(choice index, event) until every choice has finished; ``ClientGone`` if the client left."""
        finished = 0
        while finished < total:
            p, event = await queue.get()
            if event is None:
                raise ClientGone()
            if event.error is not None:
                self.cancel_all()
                raise event.error
            if event.finish_reason is not None:
                finished += 1
            yield p * n + event.index, event

    def count_tokens(self, gen: Generator, prompt_tokens: int, choices: list[Choice]) -> dict[str, int]:
        completion = sum(c.tokens for c in choices)
        m = self.ctx.metrics
        m.tokens.labels(gen.name, "prompt").inc(prompt_tokens)
        m.tokens.labels(gen.name, "completion").inc(completion)
        return codec.usage(prompt_tokens, completion)

    # -- SSE ----------------------------------------------------------------------------------
    def start_stream(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def send(self, obj: Any) -> None:
        self.write(b"data: " + jsonio.dumps(obj) + b"\n\n")
        await self.flush()

    async def stream_error(self, err: Exception) -> None:
        self.write(sse_error_event(err))
        await self.flush()

    async def finish_stream(self) -> None:
        """The end of an event stream: ``[DONE]``, then the response ends."""
        self.write(b"data: [DONE]\n\n")
        self.finish()


class CompletionsHandler(GenerationHandler):
    """``POST /v1/completions`` (also ``/openai/v1/completions`` and ``/completions``)."""

    endpoint = "completions"

    async def handle_post(self, **_: str) -> None:
        settings = self.ctx.settings
        req = await self.parsed(partial(codec.parse_completion, max_n=settings.max_sequences,
                                        max_generations=settings.max_concurrent_requests))
        gen = await self.generator(req.gen.model)
        self.check_count(len(req.prompts), req.gen.n)
        prompts = [await self.prompt_ids(gen, p, "prompt") for p in req.prompts]
        params = [self.fit(gen, ids, req.gen, "prompt") for ids in prompts]
        for ids in prompts:
            self.explainable(ids, req.gen, "prompt")
        await self.check_grammar(gen, req.gen)
        queue = self.start(gen, prompts, params, req.gen)
        n, total = req.gen.n, req.gen.n * len(prompts)
        choices = [Choice() for _ in range(total)]
        ident, created = codec.new_id("cmpl"), codec.now()
        echo_text = [gen.codec.decode(ids) if req.echo else "" for ids in prompts]
        prompt_tokens = sum(len(ids) for ids in prompts)

        def chunk(index: int, text: str, lp: dict[str, Any] | None, finish: str | None) -> dict[str, Any]:
            body: dict[str, Any] = {
                "id": ident, "object": "text_completion", "created": created, "model": gen.name,
                "choices": [{"index": index, "text": text, "logprobs": lp, "finish_reason": finish}],
            }
            if req.gen.include_usage:
                body["usage"] = None
            return body

        if req.gen.stream:
            self.start_stream()
        try:
            async for index, event in self.events(queue, n, total):
                c = choices[index]
                self.observe(gen, c, event)
                c.tokens += 1
                if event.token is not None and event.token not in gen.eos:
                    c.ids.append(event.token)
                prefix, pre_lp = "", []
                if event.prompt_logprobs is not None or (req.echo and c.tokens == 1):
                    prefix = echo_text[index // n]
                    if event.prompt_logprobs is not None:
                        ids = prompts[index // n]
                        text = gen.codec.token_text
                        pre_lp = [
                            TokenLogprob(text(t), lp, None if lp is None else [(text(a), b) for a, b in top])
                            for t, (lp, top) in zip(ids, event.prompt_logprobs)
                        ]
                e = self.entry(gen, event)
                new_lp = pre_lp + ([e] if e else [])
                start = len(c.text)
                c.text += prefix + event.text
                c.logprobs += new_lp
                c.finish_reason = event.finish_reason
                if req.gen.stream and (prefix or event.text or event.finish_reason or new_lp):
                    lp = codec.completion_logprobs(new_lp, start) if req.gen.params.logprobs is not None else None
                    await self.send(chunk(index, prefix + event.text, lp, event.finish_reason))
        except (ClientGone, StreamClosedError):
            raise
        except Exception as e:
            if not req.gen.stream:
                raise
            await self.stream_error(e)
            await self.finish_stream()
            return
        use = self.count_tokens(gen, prompt_tokens, choices)
        if req.gen.stream:
            if req.gen.include_usage:
                await self.send({"id": ident, "object": "text_completion", "created": created, "model": gen.name,
                                 "choices": [], "usage": use})
            await self.finish_stream()
            return
        answer = {
            "id": ident, "object": "text_completion", "created": created, "model": gen.name,
            "choices": [
                {"index": i, "text": c.text, "finish_reason": c.finish_reason,
                 "logprobs": codec.completion_logprobs(c.logprobs) if req.gen.params.logprobs is not None else None}
                for i, c in enumerate(choices)
            ],
            "usage": use,
        }
        if req.gen.explain:
            answer["explanation"] = await self.explanation(gen, prompts[0], choices[0])
        self.write_json(answer)


class ChatHandler(GenerationHandler):
    """``POST /v1/chat/completions`` (also ``/openai/v1/chat/completions`` and ``/chat/completions``)."""

    endpoint = "chat"

    async def handle_post(self, **_: str) -> None:
        parse = partial(codec.parse_chat, max_n=self.ctx.settings.max_sequences)
        if self.large:  # read, and rendered by the template, in the reader process
            gen = await self.generator(None)
            req, prompt = await self.ctx.plane.reader.run(reading.chat_large, parse, gen.codec.chat, self.body)
            await self.generator(req.gen.model)  # the model it names is the one served
        else:
            req = parse(self.json_body())
            gen = await self.generator(req.gen.model)
            tools = req.gen.tools
            prompt = gen.codec.render_chat(req.messages, add_generation_prompt=True,
                                           tools=tools.for_template() if tools is not None else None)
        ids = await self.encode(gen, prompt, special=False, param="messages")
        if not ids:
            raise InvalidInput("messages: the chat template made an empty prompt", param="messages")
        params = self.fit(gen, ids, req.gen, "messages")
        self.explainable(ids, req.gen, "messages")
        await self.check_grammar(gen, req.gen)
        queue = self.start(gen, [ids], [params], req.gen)
        n = req.gen.n
        choices = [Choice() for _ in range(n)]
        # tools that may be called: the answer is read as content or tool calls, streamed as either
        calling = req.gen.tools is not None and req.gen.tools.constrained
        streams = [ToolCallStream() for _ in range(n)] if calling else []
        ident, created = codec.new_id("chatcmpl"), codec.now()
        want_lp = req.logprobs

        def chunk(index: int, delta: dict[str, Any], lp: list[TokenLogprob] | None, finish: str | None) -> dict[str, Any]:
            body: dict[str, Any] = {
                "id": ident, "object": "chat.completion.chunk", "created": created, "model": gen.name,
                "choices": [{"index": index, "delta": delta,
                             "logprobs": codec.chat_logprobs(lp) if want_lp and lp is not None else None,
                             "finish_reason": finish}],
            }
            if req.gen.include_usage:
                body["usage"] = None
            return body

        if req.gen.stream:
            self.start_stream()
            for i in range(n):  # the role comes first, in its own delta
                await self.send(chunk(i, {"role": "assistant", "content": ""}, None, None))
        try:
            async for index, event in self.events(queue, n, n):
                c = choices[index]
                self.observe(gen, c, event)
                c.tokens += 1
                if event.token is not None and event.token not in gen.eos:
                    c.ids.append(event.token)
                e = self.entry(gen, event)
                if e:
                    c.logprobs.append(e)
                c.text += event.text
                c.finish_reason = event.finish_reason
                if calling and event.finish_reason == "stop" and read_tool_calls(c.text).content is None:
                    c.finish_reason = "tool_calls"
                if not req.gen.stream:
                    continue
                if calling:
                    deltas = streams[index].push(event.text)
                    for j, delta in enumerate(deltas):
                        last = j == len(deltas) - 1
                        await self.send(chunk(index, delta, [e] if e and last else [], c.finish_reason if last else None))
                    if not deltas and (c.finish_reason or e):
                        await self.send(chunk(index, {}, [e] if e else [], c.finish_reason))
                elif event.text or event.finish_reason or e:
                    delta = {"content": event.text} if event.text else {}
                    await self.send(chunk(index, delta, [e] if e else [], event.finish_reason))
        except (ClientGone, StreamClosedError):
            raise
        except Exception as err:
            if not req.gen.stream:
                raise
            await self.stream_error(err)
            await self.finish_stream()
            return
        use = self.count_tokens(gen, len(ids), choices)
        if req.gen.stream:
            if req.gen.include_usage:
                await self.send({"id": ident, "object": "chat.completion.chunk", "created": created,
                                 "model": gen.name, "choices": [], "usage": use})
            await self.finish_stream()
            return
        answer = {
            "id": ident, "object": "chat.completion", "created": created, "model": gen.name,
            "choices": [
                {"index": i, "message": message(c.text, calling),
                 "logprobs": codec.chat_logprobs(c.logprobs) if want_lp else None,
                 "finish_reason": c.finish_reason}
                for i, c in enumerate(choices)
            ],
            "usage": use,
        }
        if req.gen.explain:
            answer["explanation"] = await self.explanation(gen, ids, choices[0])
        self.write_json(answer)


def message(text: str, calling: bool) -> dict[str, Any]:
    """A chat answer's message: its text, or (tools that may be called) the tool calls its text holds."""
    read = read_tool_calls(text) if calling else None
    if read is None or read.content is not None:
        return {"role": "assistant", "content": text, "reasoning_content": None, "tool_calls": []}
    return {"role": "assistant", "content": None, "reasoning_content": None, "tool_calls": tool_calls_body(read.calls)}


class EmbeddingsHandler(OpenAIBase):
    """``POST /v1/embeddings`` (also ``/openai/v1/embeddings`` and ``/embeddings``)."""

    endpoint = "embeddings"

    async def handle_post(self, **_: str) -> None:
        req = await self.parsed(codec.parse_embeddings)
        servable = await self.model_named(req.model)
        if not isinstance(servable, Embedder):
            raise InvalidInput(
                f"model {servable.name!r} is not an embedding model: use /v1/completions or /v1/chat/completions",
                param="model",
            )
        if req.dimensions is not None and req.dimensions != servable.dimensions:
            raise InvalidInput(
                f"dimensions: this model gives {servable.dimensions}-dimensional vectors and was not trained "
                f"for shorter ones; got {req.dimensions}", param="dimensions",
            )
        if len(req.inputs) > self.ctx.settings.max_instances:
            raise InvalidInput(f"input: at most {self.ctx.settings.max_instances} inputs per request, "
                               f"got {len(req.inputs)}", param="input")
        if all(isinstance(x, str) for x in req.inputs):
            texts = np.array([str(x).encode("utf-8") for x in req.inputs], dtype=object)
            out = await self.ctx.plane.dispatcher.predict(servable, EMBED_SIGNATURE, {"text": texts}, len(texts))
            vectors, tokens = out["embedding"], int(out["tokens"].sum())
        else:
            ids = [list(x) if isinstance(x, list) else servable.tokenize([x])[0] for x in req.inputs]
            vectors = await self.ctx.plane.dispatcher.call(lambda: servable.embed_ids(ids))
            tokens = sum(len(i) for i in ids)
        self.ctx.metrics.tokens.labels(servable.name, "prompt").inc(tokens)
        self.write_json(codec.embeddings_response(servable.name, vectors, req.encoding_format, tokens))


class TokenizeHandler(OpenAIBase):
    """``POST /tokenize`` (vLLM's form): a prompt's token ids, or those of chat messages as the model's
    template renders them (with the tools offered), and the model's context length."""

    endpoint = "tokenize"

    async def handle_post(self, **_: str) -> None:
        req = await self.parsed(codec.parse_tokenize)
        servable = await self.model_named(req.model)
        text = text_codec(servable)
        if req.messages is not None:
            tools = req.tools.for_template() if req.tools is not None else None
            source = text.render_chat(req.messages, add_generation_prompt=req.add_generation_prompt, tools=tools)
        else:
            assert req.prompt is not None
            source = req.prompt
        ids = await asyncio.get_running_loop().run_in_executor(
            None, lambda: text.encode(source, special=req.add_special_tokens))
        self.write_json({"count": len(ids), "max_model_len": getattr(servable, "max_len", 0), "tokens": ids,
                         "token_strs": [text.token_text(t) for t in ids] if req.return_token_strs else None})


class DetokenizeHandler(OpenAIBase):
    """``POST /detokenize`` (vLLM's form): the text of token ids."""

    endpoint = "detokenize"

    async def handle_post(self, **_: str) -> None:
        model, tokens = await self.parsed(codec.parse_detokenize)
        servable = await self.model_named(model)
        text = text_codec(servable)
        bad = next((t for t in tokens if t < 0 or t >= text.vocab_size), None)
        if bad is not None:
            raise InvalidInput(f"tokens: token id {bad} is outside the vocabulary (0..{text.vocab_size - 1})",
                               param="tokens")
        self.write_json({"prompt": text.decode(tokens)})


def text_codec(servable: Servable) -> Any:
    """The tokenizer of a text model (generation or embeddings); a 400 for a tensor model."""
    text = getattr(servable, "codec", None)
    if text is None:
        raise InvalidInput(f"model {servable.name!r} is not a text model: it has no tokenizer", param="model")
    return text


class ModelsHandler(OpenAIBase):
    """``GET /openai/v1/models`` (and ``/v1/models`` when the protocol is openai), one model's card."""

    endpoint = "models"

    def get(self, model: str | None = None) -> None:
        names = list(self.ctx.plane.repository.models)
        created = int(self.ctx.started)
        lengths = self.ctx.plane.repository.context_lengths()
        if model is None:
            return self.write_json(codec.models_list(names, created, lengths))
        if model not in names:
            raise NotFound(f"The model `{model}` does not exist", param="model", code="model_not_found")
        self.write_json(codec.model_card(model, created, lengths.get(model)))
