"""What the server knows of a loaded model: tensor specs, signatures and the ``Servable`` protocol.

Codecs check requests against ``Signature``; the dispatcher calls ``Servable.predict`` off the IO
loop. Runtimes (TensorFlow now, others later) implement ``Servable``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modelserver import dtypes
from modelserver.errors import InvalidInput, NotFound

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """A named input or output: V2 datatype and shape (-1 for an unknown dimension).

    ``shape`` is None when even the rank is unknown.
    """

    name: str
    datatype: str
    shape: tuple[int, ...] | None

    @property
    def dtype(self) -> dtypes.DType:
        dt = dtypes.from_v2(self.datatype)
        assert dt is not None, self.datatype
        return dt

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def batched(self) -> bool:
        """True when the first dimension is free, so rows can be stacked into a batch."""
        return bool(self.shape) and self.shape[0] == -1  # type: ignore[index]

    def shape_list(self) -> list[int]:
        return [] if self.shape is None else list(self.shape)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape_list()}


@dataclass(frozen=True)
class Signature:
    """A callable entry point of a model: named inputs and outputs."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    method: str = "tensorflow/serving/predict"
    _by_name: dict[str, TensorSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({t.name: t for t in self.inputs})

    def input(self, name: str) -> TensorSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidInput(
                f"unknown input {name!r}: signature {self.name!r} takes "
                f"{', '.join(repr(t.name) for t in self.inputs)}"
            ) from None

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def output(self, name: str) -> TensorSpec:
        for t in self.outputs:
            if t.name == name:
                return t
        raise InvalidInput(
            f"unknown output {name!r}: signature {self.name!r} gives "
            f"{', '.join(repr(t.name) for t in self.outputs)}"
        )


class Servable(Protocol):
    """One loaded version of one model."""

    name: str
    version: int
    platform: str
    signatures: dict[str, Signature]
    #: example values per input name, from the model's own files when it has them
    examples: dict[str, Any]

    def predict(self, signature: str, inputs: Tensors) -> Tensors:
        """Run the model (blocking: called from an executor thread)."""

    def explain(
        self, signature: str, inputs: Tensors, *, target: str | None, steps: int
    ) -> Tensors:
        """Per-feature attributions for each float input (blocking)."""


def get_signature(servable: Servable, name: str) -> Signature:
    try:
        return servable.signatures[name]
    except KeyError:
        raise NotFound(
            f"model {servable.name!r} version {servable.version} has no signature {name!r}; "
            f"it has {', '.join(repr(s) for s in sorted(servable.signatures)) or 'none'}"
        ) from None
