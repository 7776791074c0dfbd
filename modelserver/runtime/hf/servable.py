"""Hugging Face model directories as servables: causal LMs that generate, encoders that embed.

``load_hf`` reads config.json and picks the kind: a ``...ForCausalLM``/``...LMHeadModel``
architecture becomes a ``Generator`` (the OpenAI completions and chat endpoints, through the
continuous-batching ``Engine``); an encoder becomes an ``Embedder``, pooled and normalized as the
directory's sentence-transformers files say (``modules.json``, ``1_Pooling/config.json``). The
embedder also has a tensor signature (``embed``: text in, vectors out), so V1 and V2 clients and
the adaptive batcher use it like any other model.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelserver.errors import InvalidInput, ModelLoadError, NotFound
from modelserver.interface import (
    EMBED_SIGNATURE,
    Event,
    SamplingParams,
    Signature,
    Tensors,
    TensorSpec,
    TokenAttributions,
)
from modelserver.runtime.hf.engine import Engine
from modelserver.runtime.hf.text import TextCodec, read_json

GENERATIVE_SUFFIXES = ("ForCausalLM", "LMHeadModel")

GENERATE_SIGNATURE = "generate"
#: tokens generated per text on the tensor signature (as completions default to)
TENSOR_MAX_TOKENS = 16


def is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def architecture(path: Path) -> str:
    config = read_json(path / "config.json")
    archs = config.get("architectures") or []
    if not archs or not isinstance(archs[0], str):
        raise ModelLoadError(f"{path / 'config.json'} names no architecture (\"architectures\": [...])")
    return archs[0]


@dataclass(frozen=True)
class GenerationLimits:
    n_slots: int
    max_len: int | None
    max_waiting: int


class Generator:
    """A causal LM: prompts in, tokens out, through the engine.

    Besides the OpenAI endpoints, a ``generate`` signature (``text_input`` in, ``text_output`` out,
    greedy, up to 16 tokens) lets V1 and V2 clients use it as a tensor model.
    """

    platform = "huggingface"
    kind = "generate"

    def __init__(self, name: str, version: int, path: Path, limits: GenerationLimits) -> None:
        from modelserver.runtime.hf.architectures import load_causal_lm

        self.name, self.version, self.path = name, version, path
        self.signatures = {
            GENERATE_SIGNATURE: Signature(
                GENERATE_SIGNATURE,
                inputs=(TensorSpec("text_input", "BYTES", (-1,)),),
                outputs=(TensorSpec("text_output", "BYTES", (-1,)),),
                method="generate",
            )
        }
        self.examples: dict[str, Any] = {"text_input": "Once upon a time"}
        self.codec = TextCodec(path)
        self.model = load_causal_lm(path, n_slots=limits.n_slots, max_len=limits.max_len)
        self.architecture = architecture(path)
        self.max_len = self.model.max_len
        eos = set(self.model.eos_token_ids)
        gen = read_json(path / "generation_config.json").get("eos_token_id")
        eos.update(gen if isinstance(gen, list) else [gen] if isinstance(gen, int) else [])
        tok_eos = self.codec.token_id(self.codec.special["eos_token"])
        if tok_eos is not None:
            eos.add(tok_eos)
        self.eos = frozenset(eos)
        self.engine = Engine(self.model, self.codec, self.eos, max_waiting=limits.max_waiting)
        self._grammar_lock = threading.Lock()

    def check_grammar(self, grammar: str, param: str) -> None:
        """Refuse (400, naming the feature) a grammar this model's tokenizer cannot follow; the first
        call builds llguidance's view of the tokenizer (blocking: an executor thread)."""
        import llguidance

        with self._grammar_lock:
            if self.engine.grammar_tokenizer is None:
                self.engine.grammar_tokenizer = llguidance.LLTokenizer(
                    self.codec.tokenizer.to_str(), n_vocab=self.model.vocab_size, eos_token=sorted(self.eos))
        error = llguidance.LLMatcher.validate_grammar(grammar, self.engine.grammar_tokenizer)
        if error:
            raise InvalidInput(f"{param}: cannot be followed: {error}", param=param)

    def generate_texts(self, prompts: list[str], max_tokens: int = TENSOR_MAX_TOKENS) -> list[str]:
        """Greedy completions of several prompts, decoded together (blocking: an executor thread)."""
        outputs = [""] * len(prompts)
        pending = threading.Semaphore(0)
        errors: list[Exception] = []
        submitted = 0
        for i, prompt in enumerate(prompts):
            ids = self.codec.encode(prompt)
            if not ids:
                continue
            room = self.max_len - len(ids)
            if room < 1:
                raise InvalidInput(
                    f"text_input[{i}] is {len(ids)} tokens; this model reads at most {self.max_len - 1} "
                    "before generating", code="context_length_exceeded",
                )

            def emit(event: Event, i: int = i) -> None:
                outputs[i] += event.text
                if event.error is not None:
                    errors.append(event.error)
                if event.finish_reason is not None:
                    pending.release()

            params = SamplingParams(max_tokens=min(max_tokens, room), temperature=0.0)
            self.engine.submit(ids, params, n=1, seed=0, emit=emit)
            submitted += 1
        for _ in range(submitted):
            pending.acquire()
        if errors:
            raise errors[0]
        return outputs

    def predict(self, signature: str, inputs: Tensors) -> Tensors:
        if signature != GENERATE_SIGNATURE:
            raise NotFound(f"model {self.name!r} has only the signature {GENERATE_SIGNATURE!r}")
        texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                 for v in inputs["text_input"].reshape(-1)]
        out = self.generate_texts(texts)
        return {"text_output": np.array([t.encode("utf-8") for t in out], dtype=object)}

    def explain(self, signature: str, inputs: Tensors, *, target: str | None, steps: int) -> Tensors:
        raise InvalidInput(
            f"model {self.name!r} is a generative model: its tensor signature has no explanations; ask "
            "/v1/completions or /v1/chat/completions with \"explain\": true"
        )

    def explain_completion(self, prompt: list[int], completion: list[int], steps: int) -> TokenAttributions:
        values, score, baseline = self.model.integrated_gradients(prompt, completion, steps)
        return TokenAttributions(values, score, baseline)

    def warmup(self) -> None:
        """Generate a few tokens (compiles the prefill and decode graphs) before reporting ready."""
        done = threading.Event()
        failure: list[Exception] = []

        def emit(event: Event) -> None:
            if event.error is not None:
                failure.append(event.error)
            if event.finish_reason is not None:
                done.set()

        prompt = self.codec.encode("Hello") or [0]
        self.engine.submit(prompt, SamplingParams(max_tokens=2, temperature=0.0), n=1, seed=0, emit=emit)
        if not done.wait(600):
            raise ModelLoadError("warm-up generation did not finish in 600 s")
        if failure:
            raise failure[0]

    def close(self) -> None:
        self.engine.close()


@dataclass(frozen=True)
class Pooling:
    mode: str  # cls | mean | max | lasttoken
    normalize: bool
    max_tokens: int


def pooling_of(path: Path, encoder_max: int) -> Pooling:
    """How sentence-transformers turns this directory's token vectors into one vector."""
    modules = []
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
    pool_dir = next(
        (path / m.get("path", "") for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling")),
        path / "1_Pooling",
    )
    cfg = read_json(pool_dir / "config.json")
    mode = "mean"
    for key, name in (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
                      ("pooling_mode_lasttoken", "lasttoken"), ("pooling_mode_mean_tokens", "mean")):
        if cfg.get(key):
            mode = name
            break
    st = read_json(path / "sentence_bert_config.json")
    limit = int(st.get("max_seq_length") or encoder_max)
    return Pooling(mode, any(t.endswith("Normalize") for t in types), min(limit, encoder_max))


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """One vector per row of ``hidden`` [B, T, H], counting only the tokens ``mask`` marks."""
    m = mask[..., None].astype(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return np.where(m > 0, hidden, -np.inf).max(axis=1)
    if mode == "lasttoken":
        last = mask.sum(axis=1) - 1
        return hidden[np.arange(hidden.shape[0]), last]
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


class Embedder:
    """An encoder: texts (or token ids) in, one vector per input out."""

    platform = "huggingface"
    kind = "embed"

    def __init__(self, name: str, version: int, path: Path) -> None:
        from modelserver.runtime.hf.architectures import load_encoder

        self.name, self.version, self.path = name, version, path
        self.codec = TextCodec(path)
        self.encoder = load_encoder(path)
        self.architecture = architecture(path)
        self.pooling = pooling_of(path, self.encoder.max_len)
        self.dimensions = self.encoder.hidden_size
        self.max_len = self.pooling.max_tokens
        pad = self.codec.token_id(self.codec.special["pad_token"])
        self.pad_id = pad if pad is not None else 0
        self.signatures = {
            EMBED_SIGNATURE: Signature(
                EMBED_SIGNATURE,
                inputs=(TensorSpec("text", "BYTES", (-1,)),),
                outputs=(TensorSpec("embedding", "FP32", (-1, self.dimensions)), TensorSpec("tokens", "INT32", (-1,))),
            )
        }
        self.examples = {"text": ["The quick brown fox jumps over the lazy dog."]}

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.codec.encode_batch(texts)

    def embed_ids(self, batch: list[list[int]]) -> np.ndarray:
        """Pooled (and normalized, if the model says so) float32 vectors [B, H]."""
        for i, ids in enumerate(batch):
            if len(ids) > self.max_len:
                raise InvalidInput(
                    f"input[{i}] is {len(ids)} tokens; this model reads at most {self.max_len}",
                    param="input", code="context_length_exceeded",
                )
            if not ids:
                raise InvalidInput(f"input[{i}] is empty: expected at least one token", param="input")
        width = max(len(ids) for ids in batch)
        ids_arr = np.full((len(batch), width), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(batch), width), dtype=np.int32)
        for i, ids in enumerate(batch):
            ids_arr[i, : len(ids)] = ids
            mask[i, : len(ids)] = 1
        vectors = pool(self.encoder(ids_arr, mask), mask, self.pooling.mode)
        if self.pooling.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors.astype(np.float32)

    def predict(self, signature: str, inputs: Tensors) -> Tensors:
        if signature != EMBED_SIGNATURE:
            raise NotFound(f"model {self.name!r} has only the signature {EMBED_SIGNATURE!r}")
        texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in inputs["text"].reshape(-1)]
        batch = self.tokenize(texts)
        vectors = self.embed_ids(batch) if batch else np.zeros((0, self.dimensions), np.float32)
        return {"embedding": vectors, "tokens": np.array([len(b) for b in batch], dtype=np.int32)}

    def explain(self, signature: str, inputs: Tensors, *, target: str | None, steps: int) -> Tensors:
        raise InvalidInput(f"model {self.name!r} is an embedding model: it has no explanations")


def load_hf(name: str, version: int, path: Path, limits: GenerationLimits) -> Generator | Embedder:
    arch = architecture(path)
    if arch.endswith(GENERATIVE_SUFFIXES):
        return Generator(name, version, path, limits)
    return Embedder(name, version, path)
