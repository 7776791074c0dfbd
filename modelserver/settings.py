"""All of the server's settings in one typed object.

Each setting has a command-line flag (``--max-body-bytes``) and an environment variable
(``MODELSERVER_MAX_BODY_BYTES``); the flag wins over the variable, the variable over the default.
The CLI builds its flags from this dataclass, so a setting is declared once, here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from modelserver.contract import FORMATS, GRPC_PORT, HTTP_PORT, LOAD_POLICIES, PROTOCOLS

ENV_PREFIX = "MODELSERVER_"


def _setting(default: Any, help: str, *, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class Settings:
    """How one model server runs: what it serves, where, and its limits."""

    model_path: str | None = _setting(
        None, "model directory (SavedModel or Hugging Face), or a directory of numbered versions; the demo if empty"
    )
    name: str = _setting("", "model name in URLs (default: the directory's name, or 'iris')")
    model_repository: str = _setting(
        "", "a directory or s3:// prefix whose every subdirectory (and .keras file) is a model, served by its "
        "name; instead of one model path",
    )
    load_policy: str = _setting(
        "all", "with a model repository: load every model at start (all), or each when first asked for "
        "(on-demand: a request or a load call; models added later are found then)", choices=LOAD_POLICIES,
    )
    max_loaded_bytes: int = _setting(
        0, "with a model repository: memory the loaded models may take (0: no limit); least recently used idle "
        "models are unloaded to make room",
    )
    format: str = _setting(
        "auto", "how the model is stored: auto (from its files), tensorflow (SavedModel), keras (a .keras or "
        ".h5 file), python (a directory with model.py) or huggingface",
        choices=FORMATS,
    )
    imports: str = _setting(
        "", "comma-separated Python modules imported before models load (for example one that registers "
        "custom Keras layers with @keras.saving.register_keras_serializable())",
    )
    host: str = _setting("127.0.0.1", "address to listen on (0.0.0.0 in containers)")
    port: int = _setting(HTTP_PORT, "port to listen on")
    grpc_port: int = _setting(GRPC_PORT, "port of the gRPC server (Open Inference Protocol, health, reflection); 0: none")
    protocol: str = _setting(
        "auto", "protocol the home page presents first: auto (openai for Hugging Face models, v1 for the others), "
        "v1, v2 or openai; every protocol is served", choices=PROTOCOLS,
    )
    signature: str = _setting("serving_default", "signature used when a request names none")
    version_labels: str = _setting("", "version labels, as 'stable=1,canary=2'")
    max_body_bytes: int = _setting(10 * 1024 * 1024, "largest request body accepted (413 above)")
    timeout_seconds: float = _setting(30.0, "longest a model call may take (504 after)")
    max_instances: int = _setting(10000, "most rows (instances) in one request")
    max_concurrent_requests: int = _setting(
        256, "inference requests in progress at once; more get 429"
    )
    max_connections: int = _setting(
        10000, "open connections at once (at most the descriptor limit less a reserve); more get 503"
    )
    max_header_bytes: int = _setting(65536, "longest request line and headers (431, or 414, above)")
    idle_timeout_seconds: float = _setting(
        75.0, "longest wait for a request's headers, on a new or an idle keep-alive connection (then it closes)"
    )
    body_timeout_seconds: float = _setting(120.0, "longest wait for a request's whole body (then it closes)")
    api_keys: str = _setting("", "comma-separated API keys; when set, inference needs one")
    api_key_file: str = _setting("", "file with one API key per line (a mounted Secret)")
    batching: bool = _setting(True, "merge concurrent requests into one model call")
    max_batch_size: int = _setting(32, "most rows in one merged model call")
    max_latency_ms: float = _setting(
        0.0, "extra wait to gather a batch when the model is idle (0: none, batch only while busy)"
    )
    inline_call_ms: float = _setting(
        1.0, "run a model call on the IO loop, skipping the thread hand-off, when no other request is "
        "in progress and the signature's calls take under this many ms (0: always use a thread)",
    )
    model_threads: int = _setting(
        0, "threads running model calls (0: one per CPU, or the worker's share of them with --workers)"
    )
    tf_threads: int = _setting(
        0, "TensorFlow's intra-op and inter-op threads (0: TensorFlow's default, every CPU; "
        "with --workers, the worker's share of them)",
    )
    workers: int = _setting(
        1, "server processes sharing the port, each with its own copy of the model (0: one per CPU)"
    )
    event_loop: str = _setting(
        "auto", "event loop: uvloop when it is installed (auto), uvloop, or asyncio's own",
        choices=("auto", "uvloop", "asyncio"),
    )
    max_sequences: int = _setting(
        8, "generative models: sequences decoded together (key/value cache slots); bounds n too"
    )
    max_model_len: int = _setting(
        0, "generative models: longest prompt plus completion in tokens (0: the model's own limit)"
    )
    mapping_request: str = _setting(
        "", "custom mapping of /predict and /explain: a JSON template of JMESPath expressions that turns the "
        "caller's body into a V1 or V2 body (inline JSON, or a file's path)",
    )
    mapping_response: str = _setting(
        "", "custom mapping: a JSON template of JMESPath expressions over the standard answer (and 'request', "
        "the caller's body) that makes the caller's answer (inline JSON, or a file's path)",
    )
    mapping_example: str = _setting(
        "", "custom mapping: an example of the caller's body, for the home page's curl example (inline JSON)"
    )
    warmup: bool = _setting(True, "run a synthetic inference before reporting ready")
    explain_steps: int = _setting(50, "integrated-gradients steps for /explain and explained completions")
    explain_max_prompt_tokens: int = _setting(
        256, "generative models: longest prompt, in tokens, that a completion with explain: true may have"
    )
    drain_seconds: float = _setting(30.0, "longest wait for in-flight requests on SIGTERM")
    log_level: str = _setting("info", "log level", choices=("debug", "info", "warning", "error"))
    log_format: str = _setting("json", "log line format", choices=("json", "text"))

    def api_key_set(self) -> frozenset[str]:
        """The accepted API keys, from ``api_keys`` and ``api_key_file``; empty means no auth."""
        keys = {k.strip() for k in self.api_keys.split(",") if k.strip()}
        if self.api_key_file:
            with open(self.api_key_file, encoding="utf-8") as f:
                keys.update(line.strip() for line in f if line.strip())
        return frozenset(keys)

    def labels(self) -> dict[str, int]:
        """``version_labels`` parsed into ``{label: version}``."""
        out: dict[str, int] = {}
        for item in filter(None, (p.strip() for p in self.version_labels.split(","))):
            label, sep, version = item.partition("=")
            if not sep or not version.strip().isdigit():
                raise ValueError(f"version label {item!r} is not of the form label=VERSION")
            out[label.strip()] = int(version)
        return out


def env_name(name: str) -> str:
    """The environment variable of a declared setting (``max_body_bytes``: ``MODELSERVER_MAX_BODY_BYTES``).

    The operator sets the server's settings through these names; a name that is not declared here
    is a KeyError, so a setting renamed on one side cannot be silently ignored on the other.
    """
    if name not in _NAMES:
        raise KeyError(f"modelserver has no setting {name!r}")
    return ENV_PREFIX + name.upper()


def parse_value(kind: type, raw: str) -> Any:
    """Turn a flag or environment string into the setting's type."""
    if kind is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    return kind(raw)


_NAMES = frozenset(f.name for f in fields(Settings))


def _kind(f: Any) -> type:
    hint = f.type if isinstance(f.type, str) else f.type.__name__
    return {"int": int, "float": float, "bool": bool}.get(hint.split(" ")[0], str)


def setting_kinds() -> dict[str, tuple[type, dict[str, Any]]]:
    """Each setting's name, type and metadata, in declaration order."""
    return {f.name: (_kind(f), dict(f.metadata)) for f in fields(Settings)}


def from_sources(overrides: dict[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults, then the environment, then explicit overrides (CLI flags)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, (kind, meta) in setting_kinds().items():
        raw = env.get(env_name(name))
        if raw is not None and raw != "":
            try:
                values[name] = parse_value(kind, raw)
            except ValueError as e:
                raise ValueError(f"{env_name(name)}: {e}") from None
        if overrides.get(name) is not None:
            values[name] = overrides[name]
        choices = meta.get("choices")
        if choices and name in values and values[name] not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {values[name]!r}")
    return Settings(**values)
