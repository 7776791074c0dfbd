"""Hugging Face transformer architectures in TensorFlow: causal LMs with a slot KV cache, and a BERT encoder.

Numbers match the transformers implementations (float32 throughout) for:

* ``LlamaForCausalLM``, ``MistralForCausalLM``, ``Qwen2ForCausalLM`` (RMSNorm, rotate-half RoPE, grouped-query
  attention, SwiGLU MLP) and ``GPT2LMHeadModel`` (learned positions, LayerNorm, Conv1D weights, GELU MLP);
* ``BertModel`` (last hidden state, for sentence embeddings).

A ``CausalLM`` keeps a KV cache of ``n_slots`` independent sequences of up to ``max_len`` tokens, so a
scheduler can batch continuously: ``prefill`` fills one slot from a prompt, ``decode`` advances any set of
slots by one token each, every row at its own position. Both are a single ``tf.function`` call whose graph
holds every layer, traced once for all lengths (``input_signature`` with unknown dimensions).

The cache of layer ``l`` is two variables of shape ``[n_slots * max_len, kv_heads, head_dim]`` (slot-major
rows). They are only ever touched with row scatters and row gathers, which work in place; a dense read of
a variable that has seen a sparse op copies it whole, so weights are held as constants instead.

Calls into one model are serialized by a lock, since they share the cache.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from modelserver.errors import InvalidInput, ModelLoadError  # noqa: E402
from modelserver.runtime.hf import weights  # noqa: E402

__all__ = ["CAUSAL_LM_ARCHITECTURES", "ENCODER_ARCHITECTURES", "CausalLM", "Encoder", "load_causal_lm", "load_encoder"]

#: tokens per graph call while explaining (path points x prompt-and-completion length)
EXPLAIN_TOKENS_PER_CALL = 4096
#: masked attention scores: exp() of this minus any real score is exactly 0 in float32
_MASKED = -1e30

Attend = Callable[[int, tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def _gelu_erf(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=False)


def _gelu_tanh(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=True)


#: transformers' ACT2FN names -> TensorFlow functions with the same numbers
_ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "gelu": _gelu_erf,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "relu": tf.nn.relu,
}


# -- configuration and weights ---------------------------------------------------------------------------------


def read_config(path: Path) -> dict[str, Any]:
    """``config.json`` of a model directory, as a dict."""
    file = Path(path) / "config.json"
    try:
        config = json.loads(file.read_text())
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{file}: missing; a Hugging Face model directory needs its config.json") from exc
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{file}: not readable JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{file}: expected a JSON object")
    return config


@contextlib.contextmanager
def _config_errors(path: Path) -> Iterator[None]:
    """Turn a missing or mistyped config.json entry met while building a model into a ModelLoadError."""
    try:
        yield
    except KeyError as exc:
        raise ModelLoadError(f"{path / 'config.json'}: no {exc.args[0]!r}, which this architecture needs") from exc
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path / 'config.json'}: an entry has the wrong type ({exc})") from exc


def _architecture(config: dict[str, Any], path: Path, supported: Sequence[str]) -> str:
    archs = config.get("architectures") or []
    for arch in archs:
        if arch in supported:
            return str(arch)
    raise ModelLoadError(
        f"{path}: architecture {', '.join(map(str, archs)) or '(none in config.json)'} is not supported; "
        f"supported are {', '.join(supported)}"
    )


def _activation(name: str, path: Path) -> Callable[[tf.Tensor], tf.Tensor]:
    fn = _ACTIVATIONS.get(name)
    if fn is None:
        raise ModelLoadError(f"{path}: activation {name!r} is not supported; supported are {', '.join(_ACTIVATIONS)}")
    return fn


class _Tensors:
    """The checkpoint's tensors, looked up under optional name prefixes, as float32 with checked shapes."""

    def __init__(self, path: Path, prefixes: Sequence[str] = ("",)) -> None:
        self.path = path
        self.prefixes = tuple(prefixes)
        self.tensors = weights.load(path)

    def _find(self, names: Sequence[str]) -> np.ndarray | None:
        for prefix in self.prefixes:
            for name in names:
                if prefix + name in self.tensors:
                    return self.tensors[prefix + name]
        return None

    def has(self, name: str) -> bool:
        return self._find([name]) is not None

    def get(self, name: str, shape: Sequence[int], *aliases: str) -> np.ndarray:
        array = self._find([name, *aliases])
        if array is None:
            raise ModelLoadError(f"{self.path}: weight tensor {self.prefixes[0] + name!r} is missing")
        if tuple(array.shape) != tuple(shape):
            raise ModelLoadError(
                f"{self.path}: weight tensor {name!r} has shape {list(array.shape)}, expected {list(shape)} "
                "(config.json does not describe these weights)"
            )
        return np.asarray(array, dtype=np.float32)

    def opt(self, name: str, shape: Sequence[int], present: bool) -> np.ndarray | None:
        return self.get(name, shape) if present else None


def _const(array: np.ndarray) -> tf.Tensor:
    return tf.constant(np.ascontiguousarray(array, dtype=np.float32))


def _linear(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor | None) -> tf.Tensor:
    """``x @ w + b`` with ``w`` stored [in, out]."""
    y = tf.matmul(x, w)
    return y if b is None else y + b


def _lookup(rows: tf.Tensor | None, columns: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """Embeddings of ``ids`` from the [V, H] table, or from its transpose [H, V] when only that is kept."""
    return tf.gather(rows, ids) if rows is not None else tf.transpose(tf.gather(columns, ids, axis=1))


def _layer_norm(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, eps: float) -> tf.Tensor:
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + eps) * w + b


def _rms_norm(x: tf.Tensor, w: tf.Tensor, eps: float) -> tf.Tensor:
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + eps) * w


def quadrature(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre points on [0, 1] and their weights (adding up to 1), float32.

    Normalized layers make the path integral steep near the zero baseline; Gauss-Legendre, as Captum uses by
    default, converges there far faster than a midpoint sum of as many points.
    """
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return ((nodes + 1) / 2).astype(np.float32), (weights / 2).astype(np.float32)


# -- decoder-only language models -----------------------------------------------------------------------------


class CausalLM:
    """A decoder-only LM with a KV cache of ``n_slots`` sequences of up to ``max_len`` tokens each.

    Subclasses provide the embedding, the transformer block and the output head as graph code; this class
    owns the cache and the attention over it.
    """

    vocab_size: int
    max_len: int
    n_slots: int
    model_type: str
    eos_token_ids: tuple[int, ...]

    def __init__(
        self,
        *,
        model_type: str,
        vocab_size: int,
        max_len: int,
        n_slots: int,
        n_layers: int,
        n_heads: int,
        kv_heads: int,
        head_dim: int,
        eos_token_ids: tuple[int, ...],
    ) -> None:
        self.model_type = model_type
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.n_slots = n_slots
        self.eos_token_ids = eos_token_ids
        self.n_layers, self.n_heads, self.kv_heads, self.head_dim = n_layers, n_heads, kv_heads, head_dim
        self._groups = n_heads // kv_heads
        rows = n_slots * max_len
        self._k_cache = [
            tf.Variable(tf.zeros([rows, kv_heads, head_dim]), trainable=False, name=f"k_cache_{i}")
            for i in range(n_layers)
        ]
        self._v_cache = [
            tf.Variable(tf.zeros([rows, kv_heads, head_dim]), trainable=False, name=f"v_cache_{i}")
            for i in range(n_layers)
        ]
        self._lock = threading.Lock()
        ids_spec = tf.TensorSpec([None], tf.int32)
        slot_spec = tf.TensorSpec([], tf.int32)
        self._prefill_last = tf.function(
            lambda ids, slot: self._prefill_graph(ids, slot, all_logits=False), input_signature=[ids_spec, slot_spec]
        ).get_concrete_function()
        self._prefill_all = tf.function(
            lambda ids, slot: self._prefill_graph(ids, slot, all_logits=True), input_signature=[ids_spec, slot_spec]
        ).get_concrete_function()
        self._decode = tf.function(self._decode_graph, input_signature=[ids_spec] * 3).get_concrete_function()
        #: the explaining graph, traced on first use (most models are never explained)
        self._path: Any = None

    # -- the architecture's part (graph code) --

    def _token_vectors(self, ids: tf.Tensor) -> tf.Tensor:
        """The input embeddings [N, H] of ``ids`` (what transformers calls ``inputs_embeds``)."""
        raise NotImplementedError

    def _place(self, vectors: tf.Tensor, positions: tf.Tensor) -> tuple[tf.Tensor, Any]:
        """The first block's input for input embeddings at ``positions``, and any per-call data the blocks need."""
        raise NotImplementedError

    def _embed(self, ids: tf.Tensor, positions: tf.Tensor) -> tuple[tf.Tensor, Any]:
        return self._place(self._token_vectors(ids), positions)

    def _block(self, i: int, x: tf.Tensor, aux: Any, attend: Attend) -> tf.Tensor:
        """Transformer block ``i``; ``attend(i, q, k, v)`` (q scaled) gives the attention output [N, heads * D]."""
        raise NotImplementedError

    def _head(self, x: tf.Tensor) -> tf.Tensor:
        """Final norm and LM head: hidden [N, H] -> logits [N, V]."""
        raise NotImplementedError

    # -- graphs --

    def _prefill_graph(self, ids: tf.Tensor, slot: tf.Tensor, *, all_logits: bool) -> tf.Tensor:
        n = tf.shape(ids)[0]
        positions = tf.range(n)
        rows = slot * self.max_len + positions
        causal = tf.range(n)[None, :] <= tf.range(n)[:, None]  # [query, key]
        bias = tf.where(causal, 0.0, _MASKED)
        kvh, g, d = self.kv_heads, self._groups, self.head_dim

        def attend(i: int, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
            self._k_cache[i].scatter_update(tf.IndexedSlices(k, rows))
            self._v_cache[i].scatter_update(tf.IndexedSlices(v, rows))
            scores = tf.einsum("tkgd,skd->kgts", tf.reshape(q, [-1, kvh, g, d]), k) + bias
            out = tf.einsum("kgts,skd->tkgd", tf.nn.softmax(scores), v)
            return tf.reshape(out, [-1, kvh * g * d])

        x, aux = self._embed(ids, positions)
        for i in range(self.n_layers):
            x = self._block(i, x, aux, attend)
        return self._head(x if all_logits else x[-1:])

    def _decode_graph(self, ids: tf.Tensor, positions: tf.Tensor, slots: tf.Tensor) -> tf.Tensor:
        span = tf.range(tf.reduce_max(positions) + 1)  # keys 0..max position: the longest row's history
        write = slots * self.max_len + positions  # [S]
        read = slots[:, None] * self.max_len + span[None, :]  # [S, L]
        bias = tf.where(span[None, :] <= positions[:, None], 0.0, _MASKED)[:, None, None, :]  # [S, 1, 1, L]
        kvh, g, d = self.kv_heads, self._groups, self.head_dim

        def attend(i: int, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
            self._k_cache[i].scatter_update(tf.IndexedSlices(k, write))
            self._v_cache[i].scatter_update(tf.IndexedSlices(v, write))
            keys = self._k_cache[i].sparse_read(read)  # [S, L, kvh, D], after the write (same resource)
            values = self._v_cache[i].sparse_read(read)
            scores = tf.einsum("skgd,slkd->skgl", tf.reshape(q, [-1, kvh, g, d]), keys) + bias
            out = tf.einsum("skgl,slkd->skgd", tf.nn.softmax(scores), values)
            return tf.reshape(out, [-1, kvh * g * d])

        x, aux = self._embed(ids, positions)
        for i in range(self.n_layers):
            x = self._block(i, x, aux, attend)
        return self._head(x)

    def _path_graph(
        self, prompt: tf.Tensor, completion: tf.Tensor, alphas: tf.Tensor, weights: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The completion's log-probability with the prompt's input embeddings scaled by each alpha, and its gradient.

        ``prompt`` [P, H] are the prompt's input embeddings, ``completion`` [G] (G >= 1) the generated ids,
        ``alphas`` [S] the points on the straight path from the zero embedding and ``weights`` [S] their
        quadrature weights. Returns the scores [S] (the sum of the completion tokens' log-probabilities) and
        the weighted sum over the points of the scores' gradients with respect to the scaled prompt embeddings
        [P, H]. No cache: every point is a full causal pass.
        """
        s, p, g = tf.shape(alphas)[0], tf.shape(prompt)[0], tf.shape(completion)[0]
        t, hidden = p + g, tf.shape(prompt)[1]
        rest = tf.broadcast_to(self._token_vectors(completion)[None], [s, g, hidden])
        positions = tf.tile(tf.range(t), [s])
        bias = tf.where(tf.range(t)[None, :] <= tf.range(t)[:, None], 0.0, _MASKED)  # [query, key]
        kvh, grp, d = self.kv_heads, self._groups, self.head_dim

        def attend(i: int, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
            q = tf.reshape(q, [s, t, kvh, grp, d])
            k, v = tf.reshape(k, [s, t, kvh, d]), tf.reshape(v, [s, t, kvh, d])
            scores = tf.einsum("btkgd,bskd->bkgts", q, k) + bias
            out = tf.einsum("bkgts,bskd->btkgd", tf.nn.softmax(scores), v)
            return tf.reshape(out, [-1, kvh * grp * d])

        with tf.GradientTape() as tape:
            scaled = alphas[:, None, None] * prompt[None]  # [S, P, H]
            tape.watch(scaled)
            x, aux = self._place(tf.reshape(tf.concat([scaled, rest], axis=1), [-1, hidden]), positions)
            for i in range(self.n_layers):
                x = self._block(i, x, aux, attend)
            x = tf.reshape(x, [s, t, hidden])[:, p - 1 : t - 1]  # the positions that predict the completion
            logp = tf.nn.log_softmax(self._head(tf.reshape(x, [-1, hidden])))  # [S * G, V]
            picked = tf.gather(logp, tf.tile(completion, [s]), batch_dims=1)
            scores = tf.reduce_sum(tf.reshape(picked, [s, g]), axis=1)
            weighted = tf.reduce_sum(scores * weights)
        return scores, tf.reduce_sum(tape.gradient(weighted, scaled), axis=0)

    # -- public API --

    def _check_ids(self, ids: np.ndarray) -> None:
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
            raise InvalidInput(f"token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})")

    def prefill(self, ids: np.ndarray, slot: int, *, all_logits: bool = False) -> np.ndarray:
        """Run a prompt (positions 0..T-1) into ``slot``, replacing what it held.

        Returns float32 logits [V] of the last position, or [T, V] of every position when ``all_logits``.
        """
        ids = np.asarray(ids, dtype=np.int32).reshape(-1)
        if not 1 <= ids.size <= self.max_len:
            raise InvalidInput(f"a prompt of {ids.size} tokens does not fit: 1 to {self.max_len} tokens")
        self._check_ids(ids)
        if not 0 <= slot < self.n_slots:
            raise ValueError(f"slot {slot} is out of range 0..{self.n_slots - 1}")
        fn = self._prefill_all if all_logits else self._prefill_last
        with self._lock:
            logits = fn(tf.constant(ids), tf.constant(slot, tf.int32)).numpy()
        return logits if all_logits else logits[0]

    def decode(self, ids: np.ndarray, positions: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """One new token per row: ``ids[r]`` at ``positions[r]`` (the slot's length so far) in ``slots[r]``.

        Each row attends to positions 0..positions[r] of its own slot. Returns float32 logits [S, V].
        """
        ids = np.asarray(ids, dtype=np.int32).reshape(-1)
        positions = np.asarray(positions, dtype=np.int32).reshape(-1)
        slots = np.asarray(slots, dtype=np.int32).reshape(-1)
        if not ids.size or ids.size != positions.size or ids.size != slots.size:
            raise ValueError(
                f"decode needs as many ids, positions and slots, at least one ({ids.size}, "
                f"{positions.size}, {slots.size})"
            )
        self._check_ids(ids)
        if int(positions.min()) < 0 or int(positions.max()) >= self.max_len:
            raise InvalidInput(f"position {int(positions.max())} is past the context length {self.max_len}")
        if int(slots.min()) < 0 or int(slots.max()) >= self.n_slots:
            raise ValueError(f"slots {slots.tolist()} out of range 0..{self.n_slots - 1}")
        if np.unique(slots).size != slots.size:
            raise ValueError(f"a slot may appear once per decode step: {slots.tolist()}")
        with self._lock:
            return self._decode(tf.constant(ids), tf.constant(positions), tf.constant(slots)).numpy()


    def integrated_gradients(
        self, prompt: Sequence[int], completion: Sequence[int], steps: int
    ) -> tuple[np.ndarray, float, float]:
        """Integrated gradients of the completion's log-probability over the prompt's input embeddings.

        The baseline is the zero embedding at every prompt position (positions, and the completion's own
        embeddings, stay as they are); the path integral is a ``steps``-point Gauss-Legendre sum. Returns one
        attribution per prompt token (summed over the embedding), the score (the completion's total
        log-probability given the prompt) and the baseline's score. Attributions add up to score minus
        baseline score, up to the quadrature's error. Does not touch the KV cache.
        """
        ids = np.asarray(prompt, dtype=np.int32).reshape(-1)
        gen = np.asarray(completion, dtype=np.int32).reshape(-1)
        if not ids.size or ids.size + gen.size > self.max_len:
            raise InvalidInput(f"a prompt of {ids.size} and a completion of {gen.size} tokens do not fit: "
                               f"1 to {self.max_len} tokens in all")
        self._check_ids(np.concatenate([ids, gen]))
        if steps < 1:
            raise ValueError(f"steps must be at least 1, not {steps}")
        if not gen.size:  # nothing generated: the empty completion has probability 1 whatever the prompt
            return np.zeros(ids.size, np.float32), 0.0, 0.0
        if self._path is None:
            spec = [tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32),
                    tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32)]
            self._path = tf.function(self._path_graph, input_signature=spec)
        vectors = self._token_vectors(tf.constant(ids))
        tokens = tf.constant(gen)
        per_call = max(1, EXPLAIN_TOKENS_PER_CALL // (ids.size + gen.size))
        alphas, weights = quadrature(steps)
        total = np.zeros(vectors.shape, np.float64)
        for start in range(0, steps, per_call):
            chunk = slice(start, start + per_call)
            _, grads = self._path(vectors, tokens, tf.constant(alphas[chunk]), tf.constant(weights[chunk]))
            total += grads.numpy()
        ends, _ = self._path(vectors, tokens, tf.constant([0.0, 1.0], tf.float32), tf.zeros([2], tf.float32))
        baseline, score = (float(v) for v in ends.numpy())
        attributions = (vectors.numpy().astype(np.float64) * total).sum(axis=1)
        return attributions.astype(np.float32), score, baseline


class _LlamaLM(CausalLM):
    """Llama, Mistral and Qwen2: RMSNorm, rotate-half RoPE, GQA, SwiGLU MLP."""

    def __init__(self, path: Path, config: dict[str, Any], arch: str, *, n_slots: int, max_len: int) -> None:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or hidden // heads)
        inter = int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
        n_layers = int(config["num_hidden_layers"])
        if heads % kv_heads:
            raise ModelLoadError(f"{path}: {heads} attention heads do not divide into {kv_heads} key/value heads")
        self.eps = float(config.get("rms_norm_eps", 1e-6))
        self.act = _activation(str(config.get("hidden_act", "silu")), path)
        qkv_bias = arch == "Qwen2ForCausalLM" or bool(config.get("attention_bias", False))
        o_bias = arch != "Qwen2ForCausalLM" and bool(config.get("attention_bias", False))
        mlp_bias = bool(config.get("mlp_bias", False))
        q_width, kv_width = heads * head_dim, kv_heads * head_dim
        # the attention scale is folded into the query projection (RoPE is linear, so it commutes)
        q_scale = np.float32(head_dim**-0.5)

        w = _Tensors(path)
        embed = w.get("model.embed_tokens.weight", [vocab, hidden])
        tied = bool(config.get("tie_word_embeddings", False))
        # the LM head is a [H, V] matmul (faster than [V, H] transposed); a tied one also serves the embedding
        self.lm_head = _const(embed.T if tied else w.get("lm_head.weight", [vocab, hidden]).T)
        self.embed = None if tied else _const(embed)
        self.final_norm = _const(w.get("model.norm.weight", [hidden]))
        self.layers: list[dict[str, tf.Tensor | None]] = []
        for i in range(n_layers):
            p = f"model.layers.{i}."
            q = w.get(p + "self_attn.q_proj.weight", [q_width, hidden]) * q_scale
            k = w.get(p + "self_attn.k_proj.weight", [kv_width, hidden])
            v = w.get(p + "self_attn.v_proj.weight", [kv_width, hidden])
            gate = w.get(p + "mlp.gate_proj.weight", [inter, hidden])
            up = w.get(p + "mlp.up_proj.weight", [inter, hidden])
            layer: dict[str, tf.Tensor | None] = {
                "in_norm": _const(w.get(p + "input_layernorm.weight", [hidden])),
                "post_norm": _const(w.get(p + "post_attention_layernorm.weight", [hidden])),
                "qkv": _const(np.concatenate([q, k, v]).T),
                "o": _const(w.get(p + "self_attn.o_proj.weight", [hidden, q_width]).T),
                "gate_up": _const(np.concatenate([gate, up]).T),
                "down": _const(w.get(p + "mlp.down_proj.weight", [hidden, inter]).T),
                "qkv_b": None,
                "o_b": None,
                "gate_up_b": None,
                "down_b": None,
            }
            if qkv_bias:
                qb = w.get(p + "self_attn.q_proj.bias", [q_width]) * q_scale
                kb = w.get(p + "self_attn.k_proj.bias", [kv_width])
                vb = w.get(p + "self_attn.v_proj.bias", [kv_width])
                layer["qkv_b"] = _const(np.concatenate([qb, kb, vb]))
            if o_bias:
                layer["o_b"] = _const(w.get(p + "self_attn.o_proj.bias", [hidden]))
            if mlp_bias:
                gb, ub = w.get(p + "mlp.gate_proj.bias", [inter]), w.get(p + "mlp.up_proj.bias", [inter])
                layer["gate_up_b"] = _const(np.concatenate([gb, ub]))
                layer["down_b"] = _const(w.get(p + "mlp.down_proj.bias", [hidden]))
            self.layers.append(layer)
        self.split_qkv = [q_width + kv_width, kv_width]
        cos, sin = _rope_tables(config, path, head_dim, max_len)
        # rotate_half(x) * sin == roll(x, D/2) * sin with the first half of sin negated
        sin[:, : head_dim // 2] *= -1
        self.cos, self.sin = _const(cos[:, None, :]), _const(sin[:, None, :])  # [max_len, 1, D]
        super().__init__(
            model_type=str(config.get("model_type", "")),
            vocab_size=vocab,
            max_len=max_len,
            n_slots=n_slots,
            n_layers=n_layers,
            n_heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            eos_token_ids=_eos_ids(path, config),
        )

    def _token_vectors(self, ids: tf.Tensor) -> tf.Tensor:
        return _lookup(self.embed, self.lm_head, ids)

    def _place(self, vectors: tf.Tensor, positions: tf.Tensor) -> tuple[tf.Tensor, Any]:
        return vectors, (tf.gather(self.cos, positions), tf.gather(self.sin, positions))  # rope: [N, 1, D] each

    def _block(self, i: int, x: tf.Tensor, aux: Any, attend: Attend) -> tf.Tensor:
        layer = self.layers[i]
        cos, sin = aux
        d = self.head_dim
        qkv = _linear(_rms_norm(x, layer["in_norm"], self.eps), layer["qkv"], layer["qkv_b"])
        qk, v = tf.split(qkv, self.split_qkv, axis=1)
        qk = tf.reshape(qk, [-1, self.n_heads + self.kv_heads, d])  # queries then keys
        qk = qk * cos + tf.roll(qk, shift=d // 2, axis=2) * sin
        q, k = tf.split(qk, [self.n_heads, self.kv_heads], axis=1)
        out = attend(i, q, k, tf.reshape(v, [-1, self.kv_heads, d]))
        x = x + _linear(out, layer["o"], layer["o_b"])
        gate_up = _linear(_rms_norm(x, layer["post_norm"], self.eps), layer["gate_up"], layer["gate_up_b"])
        gate, up = tf.split(gate_up, 2, axis=1)
        return x + _linear(self.act(gate) * up, layer["down"], layer["down_b"])

    def _head(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(_rms_norm(x, self.final_norm, self.eps), self.lm_head)


def _rope_tables(config: dict[str, Any], path: Path, head_dim: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [max_len, head_dim] of RoPE, computed in float32 like transformers' rotary embedding."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    rope_type = str(params.get("rope_type", params.get("type", "default")))
    theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
    exponent = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    inv_freq = (1.0 / (np.float32(theta) ** exponent)).astype(np.float32)
    if rope_type == "default":
        pass
    elif rope_type == "linear":
        inv_freq = (inv_freq / np.float32(params["factor"])).astype(np.float32)
    elif rope_type == "llama3":
        factor = float(params["factor"])
        low, high = float(params["low_freq_factor"]), float(params["high_freq_factor"])
        old_len = float(params.get("original_max_position_embeddings", config.get("max_position_embeddings", 0)))
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = (2 * math.pi / inv_freq).astype(np.float32)
        scaled = np.where(wavelen > low_wavelen, inv_freq / np.float32(factor), inv_freq).astype(np.float32)
        smooth = ((old_len / wavelen - low) / (high - low)).astype(np.float32)
        smoothed = ((1 - smooth) * scaled / np.float32(factor) + smooth * scaled).astype(np.float32)
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv_freq = np.where(medium, smoothed, scaled).astype(np.float32)
    else:
        raise ModelLoadError(
            f"{path}: RoPE scaling type {rope_type!r} is not supported; supported are default, linear and llama3"
        )
    freqs = np.arange(max_len, dtype=np.float32)[:, None] * inv_freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


class _GPT2LM(CausalLM):
    """GPT-2: learned positions, pre-LayerNorm blocks, Conv1D ([in, out]) weights, tied LM head."""

    def __init__(self, path: Path, config: dict[str, Any], *, n_slots: int, max_len: int) -> None:
        hidden = int(config.get("n_embd", 768))
        heads = int(config.get("n_head", 12))
        n_layers = int(config.get("n_layer", 12))
        n_pos = int(config.get("n_positions", 1024))
        inner = int(config.get("n_inner") or 4 * hidden)
        vocab = int(config.get("vocab_size", 50257))
        head_dim = hidden // heads
        self.eps = float(config.get("layer_norm_epsilon", 1e-5))
        self.act = _activation(str(config.get("activation_function", "gelu_new")), path)
        scale = head_dim**-0.5 if config.get("scale_attn_weights", True) else 1.0
        by_layer = bool(config.get("scale_attn_by_inverse_layer_idx", False))

        w = _Tensors(path, prefixes=("transformer.", ""))
        wte = w.get("wte.weight", [vocab, hidden])
        tied = config.get("tie_word_embeddings", True) or not w.has("lm_head.weight")
        self.lm_head = _const(wte.T if tied else w.get("lm_head.weight", [vocab, hidden]).T)  # [H, V]
        self.wte = None if tied else _const(wte)
        self.wpe = _const(w.get("wpe.weight", [n_pos, hidden]))
        self.ln_f = (_const(w.get("ln_f.weight", [hidden])), _const(w.get("ln_f.bias", [hidden])))
        self.layers: list[dict[str, tf.Tensor]] = []
        for i in range(n_layers):
            p = f"h.{i}."
            names = {
                "ln_1.weight": [hidden], "ln_1.bias": [hidden], "ln_2.weight": [hidden], "ln_2.bias": [hidden],
                "attn.c_attn.weight": [hidden, 3 * hidden], "attn.c_attn.bias": [3 * hidden],
                "attn.c_proj.weight": [hidden, hidden], "attn.c_proj.bias": [hidden],
                "mlp.c_fc.weight": [hidden, inner], "mlp.c_fc.bias": [inner],
                "mlp.c_proj.weight": [inner, hidden], "mlp.c_proj.bias": [hidden],
            }  # fmt: skip
            arrays = {name: w.get(p + name, shape) for name, shape in names.items()}
            # the attention scale is folded into the query columns of c_attn
            q_scale = np.float32(scale / (i + 1) if by_layer else scale)
            column_scale = np.concatenate([np.full(hidden, q_scale), np.ones(2 * hidden)]).astype(np.float32)
            arrays["attn.c_attn.weight"] = arrays["attn.c_attn.weight"] * column_scale
            arrays["attn.c_attn.bias"] = arrays["attn.c_attn.bias"] * column_scale
            self.layers.append({name: _const(array) for name, array in arrays.items()})
        super().__init__(
            model_type=str(config.get("model_type", "gpt2")),
            vocab_size=vocab,
            max_len=max_len,
            n_slots=n_slots,
            n_layers=n_layers,
            n_heads=heads,
            kv_heads=heads,
            head_dim=head_dim,
            eos_token_ids=_eos_ids(path, config),
        )

    def _token_vectors(self, ids: tf.Tensor) -> tf.Tensor:
        return _lookup(self.wte, self.lm_head, ids)

    def _place(self, vectors: tf.Tensor, positions: tf.Tensor) -> tuple[tf.Tensor, Any]:
        return vectors + tf.gather(self.wpe, positions), None

    def _block(self, i: int, x: tf.Tensor, aux: Any, attend: Attend) -> tf.Tensor:
        layer = self.layers[i]
        shape = [-1, self.n_heads, self.head_dim]
        hid = _layer_norm(x, layer["ln_1.weight"], layer["ln_1.bias"], self.eps)
        qkv = _linear(hid, layer["attn.c_attn.weight"], layer["attn.c_attn.bias"])
        q, k, v = (tf.reshape(t, shape) for t in tf.split(qkv, 3, axis=1))
        x = x + _linear(attend(i, q, k, v), layer["attn.c_proj.weight"], layer["attn.c_proj.bias"])
        hid = _layer_norm(x, layer["ln_2.weight"], layer["ln_2.bias"], self.eps)
        hid = self.act(_linear(hid, layer["mlp.c_fc.weight"], layer["mlp.c_fc.bias"]))
        return x + _linear(hid, layer["mlp.c_proj.weight"], layer["mlp.c_proj.bias"])

    def _head(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(_layer_norm(x, *self.ln_f, self.eps), self.lm_head)


def _eos_ids(path: Path, config: dict[str, Any]) -> tuple[int, ...]:
    """End-of-sequence ids: config.json's ``eos_token_id`` (an int or a list), then generation_config.json's."""
    found: list[int] = []
    sources = [config]
    try:
        sources.append(json.loads((Path(path) / "generation_config.json").read_text()))
    except (OSError, ValueError):
        pass
    for source in sources:
        value = source.get("eos_token_id") if isinstance(source, dict) else None
        for token in value if isinstance(value, list) else [value]:
            if isinstance(token, int) and token not in found:
                found.append(token)
    return tuple(found)


#: architectures (config.json ``architectures``) that ``load_causal_lm`` runs
CAUSAL_LM_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel")


def _sliding_window(config: dict[str, Any], arch: str) -> int | None:
    """The attention window (None: full attention) transformers would apply, for the causal LMs that have one."""
    if arch == "MistralForCausalLM":
        window = config.get("sliding_window", 4096)
        return int(window) if window else None
    if arch == "Qwen2ForCausalLM" and config.get("use_sliding_window", False) and config.get("sliding_window"):
        n_layers = int(config["num_hidden_layers"])
        layer_types = config.get("layer_types") or [
            "sliding_attention" if i >= int(config.get("max_window_layers", 28)) else "full_attention"
            for i in range(n_layers)
        ]
        return int(config["sliding_window"]) if "sliding_attention" in layer_types else None
    return None


def load_causal_lm(path: Path, *, n_slots: int, max_len: int | None) -> CausalLM:
    """Load a decoder-only LM directory (config.json and safetensors weights) with a cache of ``n_slots`` sequences.

    ``max_len`` (tokens per sequence, prompt included) defaults to the model's context length
    (``max_position_embeddings``/``n_positions``, or its attention window if that is shorter) and may not exceed it.
    """
    if n_slots < 1:
        raise ValueError(f"n_slots must be at least 1, not {n_slots}")
    path = Path(path)
    config = read_config(path)
    arch = _architecture(config, path, CAUSAL_LM_ARCHITECTURES)
    limit_key = "n_positions" if arch == "GPT2LMHeadModel" else "max_position_embeddings"
    limit = int(config.get(limit_key) or (1024 if arch == "GPT2LMHeadModel" else 2048))
    window = _sliding_window(config, arch)
    if max_len is None:
        max_len = min(limit, window) if window else limit
    if not 1 <= max_len <= limit:
        raise ModelLoadError(f"{path}: max_len {max_len} is outside 1..{limit} ({limit_key} in config.json)")
    if window is not None and window < max_len:
        raise ModelLoadError(
            f"{path}: sliding-window attention ({window} tokens) is not supported; "
            f"use max_len <= {window} so the window never applies"
        )
    with _config_errors(path):
        if arch == "GPT2LMHeadModel":
            return _GPT2LM(path, config, n_slots=n_slots, max_len=max_len)
        return _LlamaLM(path, config, arch, n_slots=n_slots, max_len=max_len)


# -- encoder ---------------------------------------------------------------------------------------------------

#: architectures that ``load_encoder`` runs
ENCODER_ARCHITECTURES = ("BertModel",)


class Encoder:
    """A BERT encoder: token ids and attention mask [B, T] -> last hidden state [B, T, H]."""

    hidden_size: int
    max_len: int

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ModelLoadError(
                f"{path}: position_embedding_type {config['position_embedding_type']!r} is not supported (absolute)"
            )
        hidden = self.hidden_size = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        inter = int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
        self.max_len = int(config.get("max_position_embeddings", 512))
        types = int(config.get("type_vocab_size", 2))
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.act = _activation(str(config.get("hidden_act", "gelu")), path)
        self.heads, self.head_dim = heads, hidden // heads
        w = _Tensors(path, prefixes=("", "bert."))

        def norm(prefix: str) -> tuple[tf.Tensor, tf.Tensor]:
            return (
                _const(w.get(prefix + "LayerNorm.weight", [hidden], prefix + "LayerNorm.gamma")),
                _const(w.get(prefix + "LayerNorm.bias", [hidden], prefix + "LayerNorm.beta")),
            )

        def dense(name: str, n_in: int, n_out: int) -> tuple[tf.Tensor, tf.Tensor]:
            return _const(w.get(name + ".weight", [n_out, n_in]).T), _const(w.get(name + ".bias", [n_out]))

        self.word = _const(w.get("embeddings.word_embeddings.weight", [vocab, hidden]))
        self.pos = _const(w.get("embeddings.position_embeddings.weight", [self.max_len, hidden]))
        self.type = _const(w.get("embeddings.token_type_embeddings.weight", [types, hidden]))
        self.emb_norm = norm("embeddings.")
        self.vocab_size, self.type_vocab_size = vocab, types
        self.layers: list[dict[str, tuple[tf.Tensor, tf.Tensor]]] = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            q, k, v = (w.get(f"{p}attention.self.{n}.weight", [hidden, hidden]) for n in ("query", "key", "value"))
            qb, kb, vb = (w.get(f"{p}attention.self.{n}.bias", [hidden]) for n in ("query", "key", "value"))
            self.layers.append(
                {
                    "qkv": (_const(np.concatenate([q, k, v]).T), _const(np.concatenate([qb, kb, vb]))),
                    "attn_out": dense(p + "attention.output.dense", hidden, hidden),
                    "attn_norm": norm(p + "attention.output."),
                    "inter": dense(p + "intermediate.dense", hidden, inter),
                    "out": dense(p + "output.dense", inter, hidden),
                    "out_norm": norm(p + "output."),
                }
            )
        spec = tf.TensorSpec([None, None], tf.int32)
        self._forward = tf.function(self._graph, input_signature=[spec] * 3).get_concrete_function()

    def _graph(self, ids: tf.Tensor, mask: tf.Tensor, token_types: tf.Tensor) -> tf.Tensor:
        b, t = tf.shape(ids)[0], tf.shape(ids)[1]
        h, d = self.heads, self.head_dim
        x = tf.gather(self.word, ids) + tf.gather(self.pos, tf.range(t))[None] + tf.gather(self.type, token_types)
        x = _layer_norm(x, *self.emb_norm, self.eps)
        bias = tf.where(mask[:, None, None, :] > 0, 0.0, _MASKED)  # [B, 1, 1, T]: no attention to padding
        scale = d**-0.5
        for layer in self.layers:
            qkv = tf.reshape(_linear(x, *layer["qkv"]), [b, t, 3, h, d])
            scores = tf.einsum("bqhd,bkhd->bhqk", qkv[:, :, 0] * scale, qkv[:, :, 1]) + bias
            ctx = tf.reshape(tf.einsum("bhqk,bkhd->bqhd", tf.nn.softmax(scores), qkv[:, :, 2]), [b, t, h * d])
            x = _layer_norm(x + _linear(ctx, *layer["attn_out"]), *layer["attn_norm"], self.eps)
            hid = self.act(_linear(x, *layer["inter"]))
            x = _layer_norm(x + _linear(hid, *layer["out"]), *layer["out_norm"], self.eps)
        return x

    def __call__(self, ids: np.ndarray, mask: np.ndarray, token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Last hidden state float32 [B, T, H] of right-padded ``ids`` [B, T] (``mask`` 1 for real tokens)."""
        ids = np.asarray(ids, dtype=np.int32)
        mask = np.asarray(mask, dtype=np.int32)
        types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids, dtype=np.int32)
        if ids.ndim != 2 or mask.shape != ids.shape or types.shape != ids.shape:
            raise InvalidInput(f"ids, mask and token types must be [batch, tokens] alike: {ids.shape}, {mask.shape}")
        if ids.shape[1] > self.max_len:
            raise InvalidInput(f"{ids.shape[1]} tokens is more than this encoder's {self.max_len}")
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise InvalidInput(f"token ids must be in 0..{self.vocab_size - 1}")
        if types.size and (int(types.min()) < 0 or int(types.max()) >= self.type_vocab_size):
            raise InvalidInput(f"token type ids must be in 0..{self.type_vocab_size - 1}")
        return self._forward(tf.constant(ids), tf.constant(mask), tf.constant(types)).numpy()


def load_encoder(path: Path) -> Encoder:
    """Load an encoder directory (config.json and safetensors weights), e.g. a sentence-transformers model."""
    path = Path(path)
    config = read_config(path)
    if config.get("model_type") != "bert":  # BertModel, or the encoder inside BertFor* (``bert.`` names)
        _architecture(config, path, ENCODER_ARCHITECTURES)
    with _config_errors(path):
        return Encoder(path, config)
