"""The types every layer shares: tensor specs and signatures, the ``Servable`` interface, and the
generation interfaces (sampling parameters, events, ``Generator`` and ``Embedder``).

Codecs check requests against a ``Signature`` and build ``SamplingParams``; runtimes implement
``Servable`` (and ``Generator`` or ``Embedder``); the dispatcher and the transports call them
through these interfaces alone. This module imports nothing of the server but ``dtypes`` and
``errors``, so any layer may import it without pulling in another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelserver import dtypes
from modelserver.errors import InvalidInput, NotFound

Tensors = dict[str, np.ndarray]


# -- tensors and signatures -----------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    """A named input or output: V2 datatype and shape (-1 for an unknown dimension).

    ``shape`` is None when even the rank is unknown.
    """

    name: str
    datatype: str
    shape: tuple[int, ...] | None

    @property
    def dtype(self) -> dtypes.DType:
        dt = dtypes.from_v2(self.datatype)
        assert dt is not None, self.datatype
        return dt

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def batched(self) -> bool:
        """True when the first dimension is free, so rows can be stacked into a batch."""
        return bool(self.shape) and self.shape[0] == -1  # type: ignore[index]

    def shape_list(self) -> list[int]:
        return [] if self.shape is None else list(self.shape)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape_list()}


@dataclass(frozen=True)
class Signature:
    """A callable entry point of a model: named inputs and outputs."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    method: str = "tensorflow/serving/predict"
    #: rows are independent, so the batcher may merge requests (when every first dimension is free too)
    batchable: bool = True
    _by_name: dict[str, TensorSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({t.name: t for t in self.inputs})

    def input(self, name: str) -> TensorSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidInput(
                f"unknown input {name!r}: signature {self.name!r} takes "
                f"{', '.join(repr(t.name) for t in self.inputs)}"
            ) from None

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def output(self, name: str) -> TensorSpec:
        for t in self.outputs:
            if t.name == name:
                return t
        raise InvalidInput(
            f"unknown output {name!r}: signature {self.name!r} gives "
            f"{', '.join(repr(t.name) for t in self.outputs)}"
        )


class Servable(Protocol):
    """One loaded version of one model."""

    name: str
    version: int
    platform: str
    signatures: dict[str, Signature]
    #: example values per input name, from the model's own files when it has them
    examples: dict[str, Any]

    def predict(self, signature: str, inputs: Tensors) -> Tensors:
        """Run the model (blocking: called from an executor thread)."""

    def explain(
        self, signature: str, inputs: Tensors, *, target: str | None, steps: int
    ) -> Tensors:
        """Per-feature attributions for each float input (blocking)."""


def get_signature(servable: Servable, name: str) -> Signature:
    try:
        return servable.signatures[name]
    except KeyError:
        raise NotFound(
            f"model {servable.name!r} version {servable.version} has no signature {name!r}; "
            f"it has {', '.join(repr(s) for s in sorted(servable.signatures)) or 'none'}"
        ) from None


# -- generation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplingParams:
    """How one request generates; validated by the protocol codec before it gets here."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    #: how many alternatives to report with each token's logprob; None reports no logprobs
    logprobs: int | None = None
    #: report the prompt tokens' logprobs too (completions with echo and logprobs)
    prompt_logprobs: bool = False
    #: an llguidance grammar every choice must follow (structured output, tool calls); None: free text
    grammar: str | None = None


@dataclass
class Event:
    """What one generation step produced for one choice of a request."""

    index: int
    #: the new token (None for an error event)
    token: int | None
    #: text that became final with this token (may be empty: held back for a stop string or a
    #: character still incomplete)
    text: str = ""
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None
    #: ``stop`` or ``length`` on a choice's last event
    finish_reason: str | None = None
    #: per prompt token (the first is None), on a choice's first event when asked for
    prompt_logprobs: list[tuple[float | None, list[tuple[int, float]]]] | None = None
    error: Exception | None = None


Emit = Callable[[Event], None]


class ChatRenderer(Protocol):
    """A model's chat template: messages to a prompt (picklable, so another process can render)."""

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str: ...


class Tokenizer(Protocol):
    """Text to token ids and back, and the model's chat template."""

    vocab_size: int
    chat: ChatRenderer

    def encode(self, text: str, *, special: bool = True) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def token_text(self, token_id: int) -> str: ...

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                    tools: list[dict[str, Any]] | None = None) -> str: ...


class GenerationEngine(Protocol):
    """Continuous batching: requests go in, their events come out through ``emit``."""

    def submit(self, prompt: list[int], params: SamplingParams, *, n: int, seed: int | None, emit: Emit) -> Any:
        """Queue a request; the handle returned is what ``cancel`` takes."""

    def cancel(self, request: Any) -> None: ...


@dataclass(frozen=True)
class TokenAttributions:
    """Why a model generated a completion: one attribution per prompt token.

    ``score`` is the completion's total log-probability given the prompt, ``baseline_score`` the same
    with every prompt token's input embedding replaced by zeros; the attributions add up to their
    difference (integrated gradients' completeness), up to the quadrature's error.
    """

    values: np.ndarray
    score: float
    baseline_score: float


@runtime_checkable
class Generator(Protocol):
    """A causal language model served by the OpenAI completions and chat endpoints."""

    name: str
    version: int
    codec: Tokenizer
    engine: GenerationEngine
    #: longest prompt plus completion, in tokens
    max_len: int
    eos: frozenset[int]

    def explain_completion(self, prompt: list[int], completion: list[int], steps: int) -> TokenAttributions:
        """Integrated gradients of the completion's log-probability over the prompt's input embeddings
        (blocking: an executor thread)."""
        ...

    def check_grammar(self, grammar: str, param: str) -> None:
        """Refuse (``InvalidInput`` naming ``param``) a grammar this model's tokenizer cannot follow
        (blocking: an executor thread)."""
        ...


#: the tensor signature of an embedding model (texts in, vectors out)
EMBED_SIGNATURE = "embed"


@runtime_checkable
class Embedder(Protocol):
    """A sentence encoder served by the OpenAI embeddings endpoint (and as the ``embed`` signature)."""

    name: str
    version: int
    dimensions: int

    def tokenize(self, texts: list[str]) -> list[list[int]]: ...

    def embed_ids(self, batch: list[list[int]]) -> np.ndarray: ...
