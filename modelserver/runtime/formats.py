"""The model formats the server loads: a small registry that picks a runtime from the files on disk.

Each ``ModelFormat`` says which user-facing format name it answers to (``--format``,
``spec.model.format``), how to recognise its files in a model (or version) directory, and how to
load one. ``choose`` finds the format of a directory, checked against the declared one;
``loader`` turns settings into the ``Loader`` the repository calls for each version. A new format
is one more ``register(ModelFormat(...))`` in a module of its own, imported below.

Recognising a directory reads only small files (``config.json``); the heavy imports (TensorFlow,
the architectures) happen inside ``load``, so a process that only looks (the parent of worker
processes) stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelserver.errors import ModelLoadError
from modelserver.interface import Servable
from modelserver.settings import Settings

#: what the repository calls to load one version: (model name, version, directory) -> servable
Loader = Callable[[str, int, Path], Servable]


@dataclass(frozen=True)
class ModelFormat:
    """One way a model can be stored, and the runtime that serves it."""

    #: the registry's own name for it (``savedmodel``, ``hf-generative``, ...)
    kind: str
    #: the format name users declare (one of ``contract.FORMATS``)
    format: str
    #: what its directory holds, for messages
    files: str
    #: True when a directory holds this format
    matches: Callable[[Path], bool]
    #: load one version: (name, version, directory, settings)
    load: Callable[[str, int, Path, Settings], Servable]
    #: served by the generation engine (one process, no worker copies)
    generative: bool = False
    #: start the runtime it loads on (once a process; a model repository measures each model's memory after it)
    prepare: Callable[[], None] | None = None


_REGISTRY: list[ModelFormat] = []


def register(fmt: ModelFormat) -> None:
    """Add a format; the first registered that matches a directory wins."""
    _REGISTRY.append(fmt)


def registered() -> tuple[ModelFormat, ...]:
    return tuple(_REGISTRY)


def detect(path: Path) -> ModelFormat | None:
    """The format of a model (or version) directory, from its files; None if no format matches."""
    return next((f for f in _REGISTRY if f.matches(path)), None)


def is_model(path: Path) -> bool:
    """True when a file or directory holds a model of a registered format."""
    return detect(path) is not None


def choose(path: Path, declared: str) -> ModelFormat:
    """The format to load ``path`` with; ModelLoadError when the files do not fit the declared format."""
    if declared != "auto":
        own = next((f for f in _REGISTRY if f.format == declared and f.matches(path)), None)
        if own is not None:
            return own
    found = detect(path)
    if found is not None and declared in ("auto", found.format):
        return found
    if found is None:
        kinds = "; ".join(f"{f.format}: {f.files}" for f in _REGISTRY if declared in ("auto", f.format))
        raise ModelLoadError(f"{path} holds no model this server loads (expected {kinds})")
    raise ModelLoadError(
        f"{path} holds {found.files}, not the {declared} format this server was told to "
        f"load: set the format to {found.format} (--format, MODELSERVER_FORMAT, or spec.model.format) or auto"
    )


def import_modules(settings: Settings) -> None:
    """Import the modules of ``--imports`` (custom Keras layers register themselves this way)."""
    for module in filter(None, (m.strip() for m in settings.imports.split(","))):
        try:
            importlib.import_module(module)
        except Exception as e:
            raise ModelLoadError(f"--imports: cannot import {module!r}: {type(e).__name__}: {e}") from e


def loader(settings: Settings) -> Loader:
    """Load one version with the runtime its format (setting, or its files) calls for."""
    imported: list[bool] = []

    def load(name: str, version: int, path: Path) -> Servable:
        if not imported:
            import_modules(settings)
            imported.append(True)
        return choose(path, settings.format).load(name, version, path, settings)

    return load


# -- the formats served today ---------------------------------------------------------------------
def _is_savedmodel(path: Path) -> bool:
    return path.is_dir() and ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file())


def _start_tensorflow() -> None:
    from modelserver.runtime.tensorflow import start_runtime  # heavy import, off the IO loop

    start_runtime()


def _load_savedmodel(name: str, version: int, path: Path, settings: Settings) -> Servable:
    from modelserver.runtime.tensorflow import load_savedmodel  # heavy import, off the IO loop

    return load_savedmodel(name, version, path)


#: Keras model files: the Keras 3 format and the legacy HDF5 one
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def keras_file(path: Path) -> Path | None:
    """The Keras file a path names: the file itself, or the only one in a directory."""
    if path.is_file():
        return path if path.suffix.lower() in KERAS_SUFFIXES else None
    if not path.is_dir() or _is_savedmodel(path):
        return None
    found = [p for p in path.iterdir() if p.suffix.lower() in KERAS_SUFFIXES and p.is_file()]
    return found[0] if len(found) == 1 else None


def _load_keras(name: str, version: int, path: Path, settings: Settings) -> Servable:
    from modelserver.runtime.keras import load_keras  # heavy import, off the IO loop

    file = keras_file(path)
    assert file is not None
    return load_keras(name, version, file)


def _is_python(path: Path) -> bool:
    return path.is_dir() and (path / "model.py").is_file()


def _load_python(name: str, version: int, path: Path, settings: Settings) -> Servable:
    from modelserver.runtime.python import load_python

    return load_python(name, version, path)


def _hf_kind(path: Path) -> str | None:
    """``generative`` or ``embedder`` for a Hugging Face directory (config.json), else None."""
    from modelserver.runtime.hf.servable import GENERATIVE_SUFFIXES, architecture, is_hf_dir

    if not is_hf_dir(path):
        return None
    try:
        arch = architecture(path)
    except ModelLoadError:
        return "embedder"  # loading it says what is wrong with its config.json
    return "generative" if arch.endswith(GENERATIVE_SUFFIXES) else "embedder"


def _load_generator(name: str, version: int, path: Path, settings: Settings) -> Servable:
    from modelserver.runtime.hf.servable import GenerationLimits, Generator

    limits = GenerationLimits(
        n_slots=settings.max_sequences,
        max_len=settings.max_model_len or None,
        max_waiting=settings.max_concurrent_requests,
    )
    return Generator(name, version, path, limits)


def _load_embedder(name: str, version: int, path: Path, settings: Settings) -> Servable:
    from modelserver.runtime.hf.servable import Embedder

    return Embedder(name, version, path)


register(ModelFormat("savedmodel", "tensorflow", "a SavedModel (saved_model.pb)", _is_savedmodel, _load_savedmodel,
                     prepare=_start_tensorflow))
register(ModelFormat(
    "keras", "keras", "a Keras model file (.keras, or legacy .h5)", lambda p: keras_file(p) is not None, _load_keras,
    prepare=_start_tensorflow,
))
register(ModelFormat("python", "python", "a custom Python model (model.py with class Model)", _is_python, _load_python))
register(ModelFormat(
    "hf-generative", "huggingface", "a Hugging Face directory (config.json) of a causal language model",
    lambda p: _hf_kind(p) == "generative", _load_generator, generative=True, prepare=_start_tensorflow,
))
register(ModelFormat(
    "hf-embedder", "huggingface", "a Hugging Face directory (config.json) of an encoder",
    lambda p: _hf_kind(p) == "embedder", _load_embedder, prepare=_start_tensorflow,
))
