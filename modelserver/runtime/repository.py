"""The served models: finding version directories, loading and warming them, resolving requests.

A model path is either one model directory (any format of ``runtime.formats``: a SavedModel, or a
Hugging Face directory with config.json; version 1, or its own number if it is named like one) or
a base directory of numbered versions (``MODEL/1``, ``MODEL/2``), as TensorFlow Serving lays them
out. Every version is loaded; the highest answers when a request names none.

A model repository (``--model-repository``) is a directory (or an ``s3://`` prefix) whose every
subdirectory, and every Keras file, is one such model: ``list_repository`` finds them, and each is
registered without its versions, which are found when it loads (``ModelEntry.find_versions``).
Which entries are loaded when, within the memory budget, is ``modelserver.manager``'s to decide;
this module holds their state and loads or unloads one when told.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelserver.contract import REPOSITORY_STATES
from modelserver.errors import InvalidInput, ModelLoadError, NotFound, NotReady
from modelserver.interface import Servable, Signature, Tensors
from modelserver.runtime.formats import Loader, is_model

log = logging.getLogger("modelserver.repository")

LOADING, AVAILABLE, FAILED = "LOADING", "AVAILABLE", "FAILED"
#: a repository's version that is not loaded (not yet, or no longer)
UNLOADED = "UNLOADED"
#: a model's state in the repository index (the Open Inference Protocol's repository extension)
READY, UNAVAILABLE = "READY", "UNAVAILABLE"
#: what ``ModelEntry.state`` says, in the order the repository's gauge lists them
STATES = REPOSITORY_STATES


def list_repository(root: Path) -> dict[str, Path]:
    """``{name: path}`` of the models in a repository directory: each subdirectory (its name) and
    each Keras file (its stem); hidden entries are skipped. A subdirectory that holds no model is
    listed too: loading it says what is missing."""
    from modelserver.runtime.formats import KERAS_SUFFIXES

    if not root.is_dir():
        raise ModelLoadError(f"model repository {root} is not a directory")
    found: dict[str, Path] = {}
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            found[p.name] = p
        elif p.is_file() and p.suffix in KERAS_SUFFIXES:
            found.setdefault(p.stem, p)
    return found


def files_size(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file): what a model's load is first estimated at."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, names in os.walk(path):
        for n in names:
            try:
                total += os.stat(os.path.join(folder, n)).st_size
            except OSError:
                pass
    return total


def files_stamp(path: Path) -> tuple[int, int]:
    """(newest modification time in ns, file count) under ``path``: changes when its files do."""
    if path.is_file():
        st = path.stat()
        return st.st_mtime_ns, 1
    newest, count = path.stat().st_mtime_ns, 0
    for folder, dirs, names in os.walk(path):
        for n in (*dirs, *names):
            try:
                newest = max(newest, os.stat(os.path.join(folder, n)).st_mtime_ns)
            except OSError:
                pass
            count += 1
    return newest, count


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
    #: in a repository: where the model is (a directory or file, or an s3:// URI), and where its
    #: files are once fetched
    source: str = ""
    path: Path | None = None
    #: a failure of the whole model (no model in its directory, a failed fetch, over the budget)
    error: str = ""
    #: a load is under way (requests for it wait for that one)
    loading: bool = False
    #: requests that hold the model (it is not unloaded under them), and when the last one ended
    in_flight: int = 0
    last_used: float = 0.0
    #: requests waiting for it to load (it is not evicted before they take it)
    wanted: int = 0
    #: bytes charged against the memory budget while loaded, and measured at its last load
    charge: int = 0
    measured: int = 0
    #: its files' stamp when it last failed: a request retries the load only once they change
    failed_stamp: tuple[int, int] | None = None
    #: an unload asked for while requests held it: done when the last one ends
    unload_pending: bool = False
    #: why it is not loaded, when it was loaded once (``unloaded``, ``evicted``)
    unloaded_reason: str = ""

    @property
    def ready(self) -> bool:
        return bool(self.versions) and all(v.state == AVAILABLE for v in self.versions.values())

    @property
    def loaded(self) -> bool:
        return any(v.servable is not None for v in self.versions.values())

    def context_length(self) -> int | None:
        """A loaded text model's longest prompt plus completion, in tokens (None: not loaded, or no text)."""
        for version in sorted(self.versions, reverse=True):
            length = getattr(self.versions[version].servable, "max_len", None)
            if isinstance(length, int):
                return length
        return None

    @property
    def latest(self) -> int:
        if not self.versions:
            raise NotReady(f"model {self.name!r} is not loaded{': ' + self.error if self.error else ''}")
        return max(self.versions)

    def find_versions(self, path: Path) -> None:
        """Its versions, found in ``path`` (kept as they are when already known)."""
        self.path = path
        found = discover_versions(path)
        self.versions = {v: self.versions.get(v) or VersionState(v, p, UNLOADED) for v, p in sorted(found.items())}

    def status(self) -> tuple[str, str]:
        """(READY, LOADING or UNAVAILABLE, and the reason when it is not READY)."""
        if self.loading:
            return LOADING, "loading"
        if self.ready and not self.unload_pending:
            return READY, ""
        if self.error:
            return UNAVAILABLE, self.error
        failed = [f"version {v.version}: {v.error}" for v in self.versions.values() if v.error]
        if failed:
            return UNAVAILABLE, "; ".join(failed)
        return UNAVAILABLE, self.unloaded_reason or "not loaded"


    def state(self) -> str:
        """One word for counting: ready, loading, failed (its reason says why) or unloaded."""
        state, _ = self.status()
        if state != UNAVAILABLE:
            return state.lower()
        return "failed" if self.error or any(v.error for v in self.versions.values()) else "unloaded"


class ModelRepository:
    """Models by name, each with its versions and their load state."""

    def __init__(self, root: str | None = None) -> None:
        self.models: dict[str, ModelEntry] = {}
        #: the repository's directory or s3:// prefix (None: the models given one by one)
        self.root = root
        #: in a repository: the first pass of loading (all or none, by the load policy) is done
        self.started = False

    def context_lengths(self) -> dict[str, int | None]:
        """Each model's context length, where it is a loaded text model (``ModelEntry.context_length``)."""
        return {name: entry.context_length() for name, entry in self.models.items()}

    def register(self, name: str, path: Path, labels: dict[str, int] | None = None) -> ModelEntry:
        versions = discover_versions(path)
        entry = ModelEntry(name, {v: VersionState(v, p) for v, p in sorted(versions.items())})
        for label, version in (labels or {}).items():
            if version not in entry.versions:
                raise ModelLoadError(f"label {label!r} names version {version}, which {path} lacks")
        entry.labels = dict(labels or {})
        self.models[name] = entry
        return entry

    def register_lazy(self, name: str, source: str, path: Path | None) -> ModelEntry:
        """A repository's model, its versions found when it loads."""
        entry = ModelEntry(name, source=source, path=path)
        self.models[name] = entry
        return entry

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """The repository index (the Open Inference Protocol's repository extension): each model's
        versions (the model alone while its versions are not known) with its state and, when not
        READY, the reason."""
        out = []
        for name, entry in sorted(self.models.items()):
            state, reason = entry.status()
            if ready_only and state != READY:
                continue
            versions: list[int | None] = [*sorted(entry.versions)] or [None]
            for v in versions:
                row = {"name": name}
                if v is not None:
                    row["version"] = str(v)
                row.update(state=state, reason=reason)
                out.append(row)
        return out

    def load_all(self, loader: Loader, *, warmup: bool = True) -> None:
        """Load (and warm) every registered version; failures are recorded, not raised."""
        for entry in self.models.values():
            load_entry(entry, loader, warmup=warmup)

    @property
    def ready(self) -> bool:
        """Every model loaded; in a repository, the first pass of loading done (a model that failed
        is UNAVAILABLE in the index and fails its own requests, and the server stays ready)."""
        if self.root is not None:
            return self.started
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
        if not entry.versions:  # a repository's model not loaded yet: its versions are not known
            return entry.latest  # NotReady, with the reason
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
        entry = self.models[name]
        vs = entry.versions[number]
        if vs.servable is None or entry.unload_pending:
            if vs.state in (LOADING, FAILED) and not entry.unload_pending:
                detail = f": {vs.error}" if vs.error else ""
                raise NotReady(f"model {name!r} version {number} is {vs.state.lower()}{detail}")
            state, reason = entry.status()
            raise NotReady(f"model {name!r} version {number} is {state.lower()}: {reason}")
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
        """The model of the paths that name none (``/predict``): the served one, or a repository's only one."""
        if self.root is not None and len(self.models) != 1:
            names = ", ".join(repr(n) for n in list(self.models)[:10]) + (", ..." if len(self.models) > 10 else "")
            raise InvalidInput(
                f"this server serves a repository of {len(self.models)} models ({names or 'none yet'}): name one, "
                "as in /v1/models/NAME:predict or /v2/models/NAME/infer"
            )
        return next(iter(self.models))


def load_entry(entry: ModelEntry, loader: Loader, *, warmup: bool = True) -> None:
    """Load (and warm) each version of one model; failures are recorded on it, not raised."""
    for vs in entry.versions.values():
        if vs.servable is not None:
            continue
        vs.state, vs.error = LOADING, ""
        started = time.monotonic()
        try:
            servable = loader(entry.name, vs.version, vs.path)
            if warmup:
                own = getattr(servable, "warmup", None)
                if callable(own):
                    own()
                for sig_name, sig in servable.signatures.items():
                    servable.predict(sig_name, synthetic_inputs(sig))
        except Exception as e:  # recorded and reported by readiness, status and the index
            vs.state, vs.error = FAILED, f"{type(e).__name__}: {e}"
            log.error("model load failed", extra={"model": entry.name, "version": vs.version, "error": vs.error})
            continue
        vs.servable, vs.state = servable, AVAILABLE
        log.info(
            "model loaded",
            extra={"model": entry.name, "version": vs.version, "seconds": round(time.monotonic() - started, 3)},
        )


def unload_entry(entry: ModelEntry, reason: str) -> None:
    """Drop each version's servable (closing what it runs on its own); its files stay known."""
    for vs in entry.versions.values():
        close = getattr(vs.servable, "close", None)
        if callable(close):
            close()
        vs.servable, vs.state, vs.error = None, UNLOADED, ""
    entry.unload_pending = False
    entry.unloaded_reason = reason
