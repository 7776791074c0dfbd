"""Choosing the next token from logits: greedy, temperature and nucleus (top-p) sampling, logprobs.

Pure functions of numpy arrays and a ``numpy.random.Generator``, so a seeded request always
makes the same choices.
"""

from __future__ import annotations

import numpy as np

#: below this temperature sampling is greedy (argmax), as OpenAI-compatible servers do at 0
GREEDY_BELOW = 1e-5


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def choose(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """The next token for one row of logits."""
    if temperature < GREEDY_BELOW:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        ranked = p[order]
        # keep the smallest head of the ranking whose mass reaches top_p (at least one token)
        keep = int(np.searchsorted(np.cumsum(ranked), top_p)) + 1
        head = order[:keep]
        q = ranked[:keep] / ranked[:keep].sum()
        return int(head[min(int(np.searchsorted(np.cumsum(q), rng.random())), keep - 1)])
    return int(min(int(np.searchsorted(np.cumsum(p), rng.random())), len(p) - 1))


def top_logprobs(logp: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k most likely tokens and their logprobs, most likely first."""
    if k <= 0:
        return []
    k = min(k, logp.shape[-1])
    idx = np.argpartition(-logp, k - 1)[:k]
    idx = idx[np.argsort(-logp[idx], kind="stable")]
    # tokens a grammar forbade have no probability: they are not alternatives
    return [(int(i), float(logp[i])) for i in idx if np.isfinite(logp[i])]


def request_rng(seed: int | None, index: int) -> np.random.Generator:
    """The generator of choice ``index``: the same seed gives the same choices, run after run."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, index])
