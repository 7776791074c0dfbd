"""The served models: finding version directories, loading and warming them, resolving requests.

A model path is either one model directory (any format of ``runtime.formats``: a SavedModel, or a
Hugging Face directory with config.json; version 1, or its own number if it is named like one) or
a base directory of numbered versions (``MODEL/1``, ``MODEL/2``), as TensorFlow Serving lays them
out. Every version is loaded; the highest answers when a request names none.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelserver.errors import ModelLoadError, NotFound, NotReady
from modelserver.interface import Servable, Signature, Tensors
from modelserver.runtime.formats import Loader, is_model

log = logging.getLogger("modelserver.repository")

LOADING, AVAILABLE, FAILED = "LOADING", "AVAILABLE", "FAILED"


def discover_versions(path: Path) -> dict[int, Path]:
    """``{version: directory}`` for a model directory or a base of numbered versions."""
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist")
    if is_model(path):
        return {int(path.name) if path.name.isdigit() else 1: path}
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} is neither a directory nor a model file (.keras, .h5)")
    found = {
        int(p.name): p for p in path.iterdir() if p.is_dir() and p.name.isdigit() and is_model(p)
    }
    if not found:
        raise ModelLoadError(
            f"no model in {path}: expected a SavedModel (saved_model.pb), a Keras file (.keras, .h5), a "
            "custom Python model (model.py) or a Hugging Face directory (config.json) there or in "
            "numbered version directories (1/, 2/, ...)"
        )
    return found


def synthetic_inputs(sig: Signature) -> Tensors:
    """One row of zeros (empty strings for BYTES) per input, shaped from the signature."""
    out: Tensors = {}
    for t in sig.inputs:
        shape = (1,) if t.shape is None else tuple(1 if d == -1 else d for d in t.shape)
        if t.dtype.is_bytes:
            out[t.name] = np.full(shape, b"", dtype=object)
        else:
            out[t.name] = np.zeros(shape, dtype=t.dtype.numpy)
    return out


@dataclass
class VersionState:
    version: int
    path: Path
    state: str = LOADING
    error: str = ""
    servable: Servable | None = None


@dataclass
class ModelEntry:
    name: str
    versions: dict[int, VersionState] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return bool(self.versions) and all(v.state == AVAILABLE for v in self.versions.values())

    @property
    def latest(self) -> int:
        return max(self.versions)


class ModelRepository:
    """Models by name, each with its versions and their load state."""

    def __init__(self) -> None:
        self.models: dict[str, ModelEntry] = {}

    def register(self, name: str, path: Path, labels: dict[str, int] | None = None) -> ModelEntry:
        versions = discover_versions(path)
        entry = ModelEntry(name, {v: VersionState(v, p) for v, p in sorted(versions.items())})
        for label, version in (labels or {}).items():
            if version not in entry.versions:
                raise ModelLoadError(f"label {label!r} names version {version}, which {path} lacks")
        entry.labels = dict(labels or {})
        self.models[name] = entry
        return entry

    def load_all(self, loader: Loader, *, warmup: bool = True) -> None:
        """Load (and warm) every registered version; failures are recorded, not raised."""
        for entry in self.models.values():
            for vs in entry.versions.values():
                started = time.monotonic()
                try:
                    servable = loader(entry.name, vs.version, vs.path)
                    if warmup:
                        own = getattr(servable, "warmup", None)
                        if callable(own):
                            own()
                        for sig_name, sig in servable.signatures.items():
                            servable.predict(sig_name, synthetic_inputs(sig))
                except Exception as e:  # recorded and reported by readiness and status
                    vs.state, vs.error = FAILED, f"{type(e).__name__}: {e}"
                    log.error("model load failed", extra={"model": entry.name, "version": vs.version, "error": vs.error})
                    continue
                vs.servable, vs.state = servable, AVAILABLE
                log.info(
                    "model loaded",
                    extra={"model": entry.name, "version": vs.version, "seconds": round(time.monotonic() - started, 3)},
                )

    @property
    def ready(self) -> bool:
        return bool(self.models) and all(m.ready for m in self.models.values())

    def entry(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            raise NotFound(
                f"unknown model {name!r}; this server serves {', '.join(repr(n) for n in self.models)}"
            ) from None

    def version_number(self, name: str, version: str | None = None, label: str | None = None) -> int:
        """The version a request names by number or label (the latest when neither); 404 otherwise."""
        entry = self.entry(name)
        if label is not None:
            if label not in entry.labels:
                known = ", ".join(repr(k) for k in entry.labels) or "none"
                raise NotFound(f"model {name!r} has no version label {label!r} (labels: {known})")
            return entry.labels[label]
        if version is not None and version != "":
            # ASCII digits only: str.isdigit() also takes '²', which int() refuses
            if not (version.isascii() and version.isdigit()) or int(version) not in entry.versions:
                have = ", ".join(str(v) for v in entry.versions)
                raise NotFound(f"model {name!r} has no version {version!r} (versions: {have})")
            return int(version)
        return entry.latest

    def resolve(self, name: str, version: str | None = None, label: str | None = None) -> Servable:
        """The loaded servable for a request's model, version or label; 404 or 503 otherwise."""
        number = self.version_number(name, version, label)
        vs = self.models[name].versions[number]
        if vs.servable is None:
            detail = f": {vs.error}" if vs.error else ""
            raise NotReady(f"model {name!r} version {number} is {vs.state.lower()}{detail}")
        return vs.servable

    def close(self) -> None:
        """Stop what loaded models run on their own (the generation threads)."""
        for entry in self.models.values():
            for vs in entry.versions.values():
                close = getattr(vs.servable, "close", None)
                if callable(close):
                    close()

    @property
    def default_name(self) -> str:
        return next(iter(self.models))
