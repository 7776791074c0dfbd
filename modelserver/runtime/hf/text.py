"""Text in and out of a Hugging Face model directory: the fast tokenizer, chat templates, streaming text.

``tokenizer.json`` is read with the ``tokenizers`` library; ``tokenizer_config.json`` gives the
special tokens and the chat template, which is rendered the way transformers renders it (a
sandboxed Jinja environment with ``raise_exception`` and ``strftime_now``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from modelserver.errors import InvalidInput, ModelLoadError


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path} is not valid JSON: {e}") from None
    return data if isinstance(data, dict) else {}


def _token_str(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class _TemplateError(Exception):
    pass


def _raise_exception(message: str) -> None:
    raise _TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


def chat_template_of(directory: Path, config: dict[str, Any]) -> str | None:
    """The default chat template: tokenizer_config.json's, else chat_template.jinja or .json."""
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": "..."}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if isinstance(template, str):
        return template
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    t = read_json(directory / "chat_template.json").get("chat_template")
    return t if isinstance(t, str) else None


@dataclass(frozen=True)
class ChatTemplate:
    """A model's chat template and the special tokens it may name: renders messages to a prompt."""

    template: str | None
    special: dict[str, str | None]

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt for ``messages``; ``tools`` (function definitions) reach templates that read them."""
        if self.template is None:
            raise InvalidInput(
                "this model has no chat template (tokenizer_config.json has no chat_template): "
                "use /v1/completions with a prompt",
                param="messages",
            )
        try:
            return str(_compiled(self.template).render(
                messages=messages, add_generation_prompt=add_generation_prompt, tools=tools, **self.special))
        except _TemplateError as e:
            raise InvalidInput(f"the model's chat template refused the messages: {e}", param="messages") from None
        except Exception as e:
            raise InvalidInput(f"the model's chat template failed on the messages: {e}", param="messages") from None


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except Exception as e:
        raise ModelLoadError(f"the model's chat template does not compile: {e}") from None


class TextCodec:
    """Tokenize, detokenize and render chat messages for one model directory."""

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        path = directory / "tokenizer.json"
        if not path.is_file():
            raise ModelLoadError(
                f"{directory} has no tokenizer.json: modelserver reads fast tokenizers only "
                "(save the tokenizer with transformers' save_pretrained to write one)"
            )
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:
            raise ModelLoadError(f"{path} could not be read: {e}") from None
        # lengths are checked (and refused with a clear error), never cut silently
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.config = read_json(directory / "tokenizer_config.json")
        self.special = {
            key: _token_str(self.config.get(key))
            for key in ("bos_token", "eos_token", "unk_token", "pad_token")
        }
        self.chat_template = chat_template_of(directory, self.config)
        #: the template with its special tokens: picklable, so another process can render with it
        self.chat = ChatTemplate(self.chat_template, self.special)
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.tokenizer.token_to_id(token)

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=special).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def token_text(self, token_id: int) -> str:
        """One token as text, for logprobs (special tokens keep their own spelling)."""
        text = self.tokenizer.decode([token_id], skip_special_tokens=False)
        return str(text) if text else (self.tokenizer.id_to_token(token_id) or "")

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                    tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt text for chat messages (and the tools offered), from the model's chat template."""
        return self.chat.render(messages, add_generation_prompt, tools)


class Detokenizer:
    """Text of generated tokens as it grows, one token at a time.

    Each new token is decoded together with a few tokens before it, and only the new characters
    are returned, so spaces that depend on the previous token come out right; a token that ends
    inside a multi-byte character is held back until the character is complete.
    """

    def __init__(self, codec: TextCodec) -> None:
        self.codec = codec
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self.codec.decode(self.ids[self.prefix_offset : self.read_offset])
        full = self.codec.decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            delta = full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            self.text += delta
            return delta
        return ""

    def flush(self) -> str:
        """At the end: whatever was held back (an incomplete character comes out as U+FFFD)."""
        full = self.codec.decode(self.ids)
        delta = full[len(self.text) :] if full.startswith(self.text) else ""
        self.text += delta
        return delta
