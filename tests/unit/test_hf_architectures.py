"""Hugging Face architectures on TensorFlow against transformers' numbers, the slot KV cache, safetensors I/O.

The reference numbers in tests/data/hf_reference.json come from transformers and sentence-transformers
(tests/data/make_hf_reference.py); these tests need neither. The tiny models are rebuilt here, seed 0,
so they are the very models the references were made from (the tokenizations are checked too).

Tolerances: float32 TensorFlow and PyTorch agree to about 2e-7 on these logits; a real mistake (RoPE
off, a missing bias, a wrong scale) moves them by 5e-4 or more, so the bound of 2e-5 leaves room for
other CPUs and kernels while still catching one.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from modelserver.errors import InvalidInput, ModelLoadError
from modelserver.runtime.hf import weights
from modelserver.runtime.hf.architectures import CausalLM, Encoder, load_causal_lm, load_encoder
from tests.hf_models import (
    LLAMA_VARIANTS,
    make_tiny_gpt2,
    make_tiny_llama,
    make_tiny_llama_variant,
    minilm_dir,
)

pytestmark = pytest.mark.unit

REFERENCE = json.loads((Path(__file__).parent.parent / "data" / "hf_reference.json").read_text())
ATOL = 2e-5
MAX_LEN = 64
N_SLOTS = 4


# -- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    dirs = {"llama": make_tiny_llama(root / "llama"), "gpt2": make_tiny_gpt2(root / "gpt2")}
    for name in LLAMA_VARIANTS:
        dirs[name] = make_tiny_llama_variant(root / name, name)
    return dirs


@pytest.fixture(scope="module")
def models(model_dirs: dict[str, Path]) -> dict[str, CausalLM]:
    return {name: load_causal_lm(d, n_slots=N_SLOTS, max_len=MAX_LEN) for name, d in model_dirs.items()}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder(minilm_dir())


def reference(name: str) -> dict:
    return REFERENCE[name] if name in REFERENCE else REFERENCE["llama_variants"][name]


ALL_LMS = ["llama", "gpt2", *LLAMA_VARIANTS]


def greedy(lm: CausalLM, prompt: list[int], steps: int, slot: int = 0) -> tuple[list[int], list[np.ndarray]]:
    """Greedy tokens and the logits of each step, one sequence alone: prefill, then decode one row at a time."""
    logits = [lm.prefill(np.array(prompt), slot)]
    tokens: list[int] = []
    for step in range(steps):
        tokens.append(int(logits[-1].argmax()))
        if step < steps - 1:
            logits.append(lm.decode(np.array([tokens[-1]]), np.array([len(prompt) + step]), np.array([slot]))[0])
    return tokens, logits


# -- causal LMs against transformers ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LMS)
def test_model_directory_is_the_reference_one(name: str, model_dirs: dict[str, Path]) -> None:
    ref = reference(name)
    tok = Tokenizer.from_file(str(model_dirs[name] / "tokenizer.json"))
    assert tok.encode(ref["prompt"]).ids == ref["prompt_ids"]
    config = json.loads((model_dirs[name] / "config.json").read_text())
    assert config["architectures"] == [ref["architecture"]]
    assert config["vocab_size"] == tok.get_vocab_size()


@pytest.mark.parametrize("name", ALL_LMS)
def test_prefill_logits_match_transformers(name: str, models: dict[str, CausalLM]) -> None:
    ref, lm = reference(name), models[name]
    logits = lm.prefill(np.array(ref["prompt_ids"]), 0, all_logits=True)
    assert logits.shape == (len(ref["prompt_ids"]), lm.vocab_size) and logits.dtype == np.float32
    head = np.array(ref["logits_head"])
    np.testing.assert_allclose(logits[:, : head.shape[1]], head, rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.linalg.norm(logits, axis=1), ref["logits_norm"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(logits.astype(np.float64).sum(axis=1), ref["logits_sum"], rtol=0, atol=ATOL * 10)
    assert logits.argmax(axis=1).tolist() == ref["argmax"]
    last = lm.prefill(np.array(ref["prompt_ids"]), 1)
    np.testing.assert_allclose(last, logits[-1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ALL_LMS)
def test_prefill_then_decode_reproduces_greedy_generate(name: str, models: dict[str, CausalLM]) -> None:
    ref = reference(name)
    tokens, _ = greedy(models[name], ref["prompt_ids"], len(ref["greedy"]), slot=2)
    assert tokens == ref["greedy"]


@pytest.mark.parametrize("name", ["llama", "gpt2", "linear-rope-head-dim"])
def test_decode_logits_equal_a_full_prefill(name: str, models: dict[str, CausalLM]) -> None:
    """Each decode step gives the logits a prefill of the whole sequence gives at that position."""
    lm, prompt = models[name], reference(name)["prompt_ids"]
    tokens, step_logits = greedy(lm, prompt, 6, slot=3)
    full = lm.prefill(np.array(prompt + tokens[:-1]), 0, all_logits=True)
    np.testing.assert_allclose(np.stack(step_logits), full[len(prompt) - 1 :], rtol=0, atol=1e-5)


# -- continuous batching ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["llama", "gpt2", "qwen2"])
def test_batched_decode_equals_each_sequence_alone(name: str, models: dict[str, CausalLM]) -> None:
    """Sequences of different lengths, in different slots, joining at different steps, decoded together."""
    lm, base = models[name], reference(name)["prompt_ids"]
    prompts = {0: base, 1: base[:5], 2: base[3:20], 3: [base[0], base[7], base[2]]}
    steps = 8
    alone = {slot: greedy(lm, prompt, steps, slot=slot) for slot, prompt in prompts.items()}

    # leave stale, longer content in every slot first: a fresh prefill must replace it
    for slot in prompts:
        lm.prefill(np.array((base * 2)[: MAX_LEN - 2]), slot)
    tokens: dict[int, list[int]] = {}
    logits: dict[int, list[np.ndarray]] = {}
    join_at = {0: 0, 1: 0, 2: 2, 3: 5}  # slots 2 and 3 start while the others are mid-way
    for step in range(steps + max(join_at.values())):
        for slot, at in join_at.items():
            if at == step:
                logits[slot] = [lm.prefill(np.array(prompts[slot]), slot)]
                tokens[slot] = [int(logits[slot][0].argmax())]
        rows = [slot for slot in tokens if len(tokens[slot]) < steps]
        if not rows:
            break
        rows = rows[::-1] if step % 2 else rows  # row order must not matter
        out = lm.decode(
            np.array([tokens[s][-1] for s in rows]),
            np.array([len(prompts[s]) + len(tokens[s]) - 1 for s in rows]),
            np.array(rows),
        )
        assert out.shape == (len(rows), lm.vocab_size)
        for slot, row in zip(rows, out):
            logits[slot].append(row)
            tokens[slot].append(int(row.argmax()))
    for slot, (alone_tokens, alone_logits) in alone.items():
        assert tokens[slot] == alone_tokens, f"slot {slot}"
        np.testing.assert_allclose(np.stack(logits[slot]), np.stack(alone_logits), rtol=0, atol=1e-5)


def test_decode_input_checks(models: dict[str, CausalLM]) -> None:
    lm = models["llama"]
    with pytest.raises(ValueError, match="once per decode step"):
        lm.decode(np.array([1, 2]), np.array([3, 4]), np.array([1, 1]))
    with pytest.raises(ValueError, match="as many"):
        lm.decode(np.array([1, 2]), np.array([3]), np.array([1, 2]))
    with pytest.raises(ValueError, match="out of range"):
        lm.decode(np.array([1]), np.array([3]), np.array([N_SLOTS]))
    with pytest.raises(InvalidInput, match="context length"):
        lm.decode(np.array([1]), np.array([MAX_LEN]), np.array([0]))
    with pytest.raises(InvalidInput, match="vocabulary"):
        lm.decode(np.array([lm.vocab_size]), np.array([1]), np.array([0]))
    with pytest.raises(InvalidInput, match="does not fit"):
        lm.prefill(np.zeros(MAX_LEN + 1, np.int32), 0)
    with pytest.raises(InvalidInput, match="does not fit"):
        lm.prefill(np.zeros(0, np.int32), 0)
    assert lm.prefill(np.zeros(MAX_LEN, np.int32), 0).shape == (lm.vocab_size,)  # exactly max_len fits


# -- loading ---------------------------------------------------------------------------------------------------


def test_loaded_attributes(models: dict[str, CausalLM], model_dirs: dict[str, Path]) -> None:
    llama, gpt2 = models["llama"], models["gpt2"]
    config = json.loads((model_dirs["llama"] / "config.json").read_text())
    assert (llama.model_type, llama.vocab_size, llama.max_len, llama.n_slots) == (
        "llama",
        config["vocab_size"],
        MAX_LEN,
        N_SLOTS,
    )
    assert llama.eos_token_ids == (config["eos_token_id"],)
    assert gpt2.model_type == "gpt2" and gpt2.eos_token_ids == (0,)
    assert load_causal_lm(model_dirs["gpt2"], n_slots=1, max_len=None).max_len == 256  # n_positions


def test_gpt2_weight_names_without_prefix(tmp_path: Path, model_dirs: dict[str, Path], models: dict[str, CausalLM]):
    d = _copy_dir(model_dirs["gpt2"], tmp_path / "bare")
    tensors = weights.load(d)
    weights.save(d / "model.safetensors", {k.removeprefix("transformer."): np.array(v) for k, v in tensors.items()})
    ids = np.array(reference("gpt2")["prompt_ids"])
    bare = load_causal_lm(d, n_slots=1, max_len=MAX_LEN)
    np.testing.assert_allclose(bare.prefill(ids, 0), models["gpt2"].prefill(ids, 0), rtol=0, atol=1e-6)


def test_sharded_half_precision_checkpoint(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    """An index with two shards, one F16 and one BF16, loads as the float32 model with rounded weights would."""
    import ml_dtypes  # TensorFlow's dependency, for writing BF16

    d = _copy_dir(model_dirs["llama"], tmp_path / "sharded")
    tensors = {k: np.array(v) for k, v in weights.load(d).items()}
    (d / "model.safetensors").unlink()
    names = sorted(tensors)
    half, bf16 = names[: len(names) // 2], names[len(names) // 2 :]
    weights.save(d / "model-00001-of-00002.safetensors", {k: tensors[k].astype(np.float16) for k in half})
    weights.save(d / "model-00002-of-00002.safetensors", {k: tensors[k].astype(ml_dtypes.bfloat16) for k in bf16})
    index = {f"{k}": "model-00001-of-00002.safetensors" for k in half}
    index.update({k: "model-00002-of-00002.safetensors" for k in bf16})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))

    rounded = _copy_dir(model_dirs["llama"], tmp_path / "rounded")
    rounded_tensors = {k: tensors[k].astype(np.float16).astype(np.float32) for k in half}
    rounded_tensors.update({k: tensors[k].astype(ml_dtypes.bfloat16).astype(np.float32) for k in bf16})
    weights.save(rounded / "model.safetensors", rounded_tensors)

    ids = np.array(reference("llama")["prompt_ids"])
    got = load_causal_lm(d, n_slots=1, max_len=MAX_LEN).prefill(ids, 0)
    want = load_causal_lm(rounded, n_slots=1, max_len=MAX_LEN).prefill(ids, 0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def _copy_dir(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _edit_config(d: Path, **changes: object) -> None:
    config = json.loads((d / "config.json").read_text())
    config.update(changes)
    (d / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "changes,max_len,match",
    [
        (
            {"architectures": ["BloomForCausalLM"]},
            None,
            r"BloomForCausalLM is not supported; supported are "
            r"LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel",
        ),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, None, "RoPE scaling type 'yarn' is not supported"),
        ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, None, "'dynamic' is not supported"),
        ({}, 257, r"max_len 257 is outside 1\.\.256"),
        ({"architectures": ["MistralForCausalLM"], "sliding_window": 32}, 64, "sliding-window attention"),
        ({"hidden_act": "mish"}, None, "activation 'mish' is not supported"),
        ({"hidden_size": 32}, None, r"'model.embed_tokens.weight' has shape \[512, 64\], expected \[512, 32\]"),
        ({"num_hidden_layers": 3}, None, r"weight tensor 'model.layers.2.self_attn.q_proj.weight' is missing"),
        ({"attention_bias": True}, None, r"weight tensor 'model.layers.0.self_attn.q_proj.bias' is missing"),
        ({"intermediate_size": None}, None, r"config\.json: an entry has the wrong type"),
    ],
)
def test_causal_lm_load_errors(tmp_path: Path, model_dirs: dict[str, Path], changes, max_len, match) -> None:
    d = _copy_dir(model_dirs["llama"], tmp_path / "m")
    _edit_config(d, **changes)
    with pytest.raises(ModelLoadError, match=match):
        load_causal_lm(d, n_slots=1, max_len=max_len)


def test_mistral_window_bounds_the_default_length(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    d = _copy_dir(model_dirs["mistral"], tmp_path / "m")
    _edit_config(d, sliding_window=32)
    assert load_causal_lm(d, n_slots=1, max_len=None).max_len == 32
    _edit_config(d, sliding_window=None)
    assert load_causal_lm(d, n_slots=1, max_len=None).max_len == 256


def test_missing_weights_and_config(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    d = _copy_dir(model_dirs["llama"], tmp_path / "m")
    tensors = {k: np.array(v) for k, v in weights.load(d).items() if k != "lm_head.weight"}
    weights.save(d / "model.safetensors", tensors)
    with pytest.raises(ModelLoadError, match="weight tensor 'lm_head.weight' is missing"):
        load_causal_lm(d, n_slots=1, max_len=None)
    (d / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no model.safetensors or model.safetensors.index.json"):
        load_causal_lm(d, n_slots=1, max_len=None)
    config = json.loads((d / "config.json").read_text())
    del config["hidden_size"]
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="config.json: no 'hidden_size', which this architecture needs"):
        load_causal_lm(d, n_slots=1, max_len=None)
    (d / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="config.json: missing"):
        load_causal_lm(d, n_slots=1, max_len=None)


# -- the encoder against sentence-transformers ------------------------------------------------------------------


def _batch(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(map(len, ids))
    out, mask = np.zeros((len(ids), width), np.int32), np.zeros((len(ids), width), np.int32)
    for i, row in enumerate(ids):
        out[i, : len(row)], mask[i, : len(row)] = row, 1
    return out, mask


def _sentence_embeddings(enc: Encoder, ids: list[list[int]]) -> np.ndarray:
    """Mean over the real tokens, then L2-normalized: all-MiniLM-L6-v2's Pooling and Normalize modules."""
    batch, mask = _batch(ids)
    hidden = enc(batch, mask)
    assert hidden.shape == (*batch.shape, enc.hidden_size) and hidden.dtype == np.float32
    pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def test_minilm_matches_sentence_transformers(encoder: Encoder) -> None:
    ref = REFERENCE["minilm"]
    assert ref["modules"] == ["Transformer", "Pooling", "Normalize"]
    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_padding()  # this tokenizer.json pads every encoding to 128 tokens
    ids = [tok.encode(s).ids for s in ref["sentences"]]
    assert ids == ref["input_ids"]
    emb = _sentence_embeddings(encoder, ids)
    head = np.array(ref["embedding_head"])
    np.testing.assert_allclose(emb[:, : head.shape[1]], head, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), ref["embedding_norm"], rtol=0, atol=1e-5)
    for pair, cosine in ref["cosine"].items():
        a, b = map(int, pair.split("-"))
        assert emb[a] @ emb[b] == pytest.approx(cosine, abs=1e-5)
    # padding does not leak: each sentence alone gives the same embedding as in the padded batch
    for i, row in enumerate(ids):
        np.testing.assert_allclose(_sentence_embeddings(encoder, [row])[0], emb[i], rtol=0, atol=1e-6)


def test_encoder_reads_prefixed_and_gamma_beta_names(tmp_path: Path, encoder: Encoder) -> None:
    d = tmp_path / "bert"
    d.mkdir()
    (d / "config.json").write_bytes((minilm_dir() / "config.json").read_bytes())
    renamed = {}
    for name, value in weights.load(minilm_dir()).items():
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        renamed["bert." + name] = np.array(value)
    weights.save(d / "model.safetensors", renamed)
    ids, mask = _batch(REFERENCE["minilm"]["input_ids"])
    np.testing.assert_allclose(load_encoder(d)(ids, mask), encoder(ids, mask), rtol=0, atol=1e-6)


def test_encoder_input_checks_and_token_types(encoder: Encoder) -> None:
    ids, mask = _batch(REFERENCE["minilm"]["input_ids"])
    with pytest.raises(InvalidInput):
        encoder(ids[:, :2], mask)
    with pytest.raises(InvalidInput, match="more than"):
        encoder(np.ones((1, encoder.max_len + 1)), np.ones((1, encoder.max_len + 1)))
    zeros = encoder(ids, mask, np.zeros_like(ids))
    np.testing.assert_array_equal(zeros, encoder(ids, mask))
    assert not np.allclose(encoder(ids, mask, np.ones_like(ids)), zeros)


def test_encoder_load_errors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["T5EncoderModel"], "model_type": "t5"}))
    with pytest.raises(ModelLoadError, match="T5EncoderModel is not supported; supported are BertModel"):
        load_encoder(tmp_path)


# -- safetensors -----------------------------------------------------------------------------------------------


def _header(path: Path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])


def test_safetensors_round_trip_every_dtype(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensors = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal((5,)).astype(np.float16),
        "f64": rng.standard_normal((2, 2, 2)),
        "i64": np.arange(7, dtype=np.int64) - 3,
        "i32": np.array([[-(2**31), 2**31 - 1]], np.int32),
        "i8": np.array([-128, 0, 127], np.int8),
        "u8": np.array([0, 255], np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }
    path = tmp_path / "t.safetensors"
    weights.save(path, tensors)
    header = _header(path)
    assert struct.unpack("<Q", path.read_bytes()[:8])[0] % 8 == 0 and header["__metadata__"] == {"format": "pt"}
    assert header["i8"]["dtype"] == "I8" and header["bool"]["dtype"] == "BOOL" and header["f64"]["dtype"] == "F64"
    loaded = weights.load(path)
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
        np.testing.assert_array_equal(loaded[name], value)


def test_bf16_is_widened_to_float32(tmp_path: Path) -> None:
    import ml_dtypes

    values = np.array([[1.0, -2.5, 3.140625], [0.0, -0.0, 65280.0]], np.float32)  # exact in bfloat16
    path = tmp_path / "b.safetensors"
    weights.save(path, {"w": values.astype(ml_dtypes.bfloat16)})
    assert _header(path)["w"]["dtype"] == "BF16"
    loaded = weights.load(path)["w"]
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, values)
    # the raw conversion: bfloat16 bits are the upper half of float32 bits
    bits = np.array([0x3F80, 0xC020, 0x7F80], np.uint16)  # 1.0, -2.5, +inf
    assert weights.bf16_to_f32(bits).tolist() == [1.0, -2.5, float("inf")]


def test_sharded_index(tmp_path: Path) -> None:
    weights.save(tmp_path / "a.safetensors", {"x": np.ones(2, np.float32)})
    weights.save(tmp_path / "b.safetensors", {"y": np.zeros(3, np.int64), "z": np.array([True])})
    index = {"weight_map": {"x": "a.safetensors", "y": "b.safetensors", "z": "b.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = weights.load(tmp_path)
    assert sorted(loaded) == ["x", "y", "z"] and loaded["y"].dtype == np.int64
    assert weights.load(tmp_path / "model.safetensors.index.json").keys() == loaded.keys()

    index["weight_map"]["w"] = "b.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="'w' is listed in the index but in none of the shards"):
        weights.load(tmp_path)
    index["weight_map"]["w"] = "c.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match=r"c\.safetensors: missing; model\.safetensors\.index\.json lists it"):
        weights.load(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a safetensors index"):
        weights.load(tmp_path)


def test_reads_files_written_by_the_safetensors_library() -> None:
    tensors = weights.load(minilm_dir())
    assert tensors["embeddings.position_ids"].dtype == np.int64
    assert tensors["embeddings.position_ids"].reshape(-1)[:4].tolist() == [0, 1, 2, 3]
    assert tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)


def _header_file(path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


@pytest.mark.parametrize(
    "header,data,length,match",
    [
        (b"", b"", None, "the header is not JSON"),
        (b"{oops", b"", None, "the header is not JSON"),
        ([1, 2], b"", None, "not a JSON object"),
        ({}, b"", 1 << 40, "header length .* does not fit"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, None, r"truncated file\?"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, b"\0" * 16, None, "expected 12 bytes"),
        ({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, None, "dtype 'C64'; supported"),
        ({"w": {"dtype": "F32"}}, b"", None, "malformed header entry"),
    ],
)
def test_corrupt_files(tmp_path: Path, header, data, length, match) -> None:
    path = _header_file(tmp_path / "bad.safetensors", header, data, length)
    with pytest.raises(ModelLoadError, match=match) as info:
        weights.load(path)
    assert str(path) in info.value.message


def test_missing_and_tiny_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such safetensors file"):
        weights.load(tmp_path / "nope.safetensors")
    (tmp_path / "short.safetensors").write_bytes(b"\1\2")
    with pytest.raises(ModelLoadError, match="expected at least an 8-byte header length"):
        weights.load(tmp_path / "short.safetensors")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="PyTorch pickles are not supported"):
        weights.load(tmp_path)
