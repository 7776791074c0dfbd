"""The V1 transport (TensorFlow Serving REST): predict and explain (and the seed paths), model status,
metadata and list. Inference goes through the data plane; the metadata documents are built here."""

from __future__ import annotations

from typing import Any

from modelserver.codecs import openai as openai_codec
from modelserver.dataplane import TensorCall
from modelserver.interface import Servable, Signature, TensorSpec
from modelserver.runtime.repository import AVAILABLE, FAILED, UNLOADED, ModelEntry
from modelserver.server.base import BaseHandler
from modelserver.server.errors import OPENAI, PLAIN
from modelserver.server.exchange import InferenceExchange

#: TensorFlow Serving's state names for our load states
TFS_STATE = {AVAILABLE: "AVAILABLE", FAILED: "END", "LOADING": "LOADING", UNLOADED: "END"}
TF_ENUM = {
    "BOOL": "DT_BOOL", "UINT8": "DT_UINT8", "UINT16": "DT_UINT16", "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64", "INT8": "DT_INT8", "INT16": "DT_INT16", "INT32": "DT_INT32",
    "INT64": "DT_INT64", "FP16": "DT_HALF", "FP32": "DT_FLOAT", "FP64": "DT_DOUBLE", "BYTES": "DT_STRING",
}


class PredictHandler(InferenceExchange):
    """``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict|:explain``, ``/predict``,
    ``/explain`` and ``/{signature}/predict``; the seed paths also take V2 and single-tensor bodies."""

    protocol = "v1"

    async def post(  # type: ignore[override]
        self, model: str | None = None, version: str | None = None, label: str | None = None,
        verb: str = "predict", signature: str | None = None,
    ) -> None:
        self.endpoint = verb
        await self.serve(TensorCall(
            "v1" if model is not None else "seed", verb == "explain", self.body,
            model=model, version=version, label=label, signature=signature,
        ))


def version_status(entry: ModelEntry, version: int | None) -> dict[str, Any]:
    versions = [entry.versions[version]] if version is not None else list(entry.versions.values())
    return {
        "model_version_status": [
            {
                "version": str(vs.version),
                "state": TFS_STATE[vs.state],
                "status": {
                    "error_code": "OK" if vs.state != FAILED else "UNKNOWN",
                    "error_message": vs.error,
                },
            }
            for vs in sorted(versions, key=lambda v: -v.version)
        ]
    }


def _tensor_info(t: TensorSpec) -> dict[str, Any]:
    shape: dict[str, Any] = (
        {"unknown_rank": True} if t.shape is None
        else {"dim": [{"size": str(d), "name": ""} for d in t.shape], "unknown_rank": False}
    )
    return {"dtype": TF_ENUM[t.datatype], "tensor_shape": shape, "name": t.name}


def signature_def(sig: Signature) -> dict[str, Any]:
    return {
        "inputs": {t.name: _tensor_info(t) for t in sig.inputs},
        "outputs": {t.name: _tensor_info(t) for t in sig.outputs},
        "method_name": sig.method,
    }


def metadata(servable: Servable) -> dict[str, Any]:
    return {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {
            "signature_def": {
                "signature_def": {k: signature_def(s) for k, s in servable.signatures.items()}
            }
        },
    }


class StatusHandler(BaseHandler):
    """``GET /v1/models/{m}[/versions/{v}|/labels/{l}]``: TensorFlow Serving's version status."""

    protocol, endpoint = "v1", "status"

    async def get(self, model: str, version: str | None = None, label: str | None = None) -> None:
        repo = self.ctx.plane.repository
        number = repo.version_number(model, version, label) if (version or label) else None
        entry = repo.entry(model)
        self.model_label = model
        self.write_json(version_status(entry, number))


class MetadataHandler(BaseHandler):
    """``GET /v1/models/{m}[/versions/{v}]/metadata``: signature defs."""

    protocol, endpoint = "v1", "metadata"

    async def get(self, model: str, version: str | None = None, label: str | None = None) -> None:
        self.write_json(metadata(await self.use(model, version, label)))


class ListHandler(BaseHandler):
    """``GET /v1/models``: every model with its versions and states, in a body both V1 clients
    (``models``) and the OpenAI SDK (``object`` and ``data``, the model cards) read, whatever the
    server's protocol: the path is both protocols' model list."""

    protocol, endpoint = "v1", "list"

    def prepare(self) -> None:
        # errors (a missing key, say) in the form of the protocol the server presents
        self.error_form = OPENAI if self.ctx.protocol == "openai" else PLAIN
        super().prepare()

    async def get(self) -> None:
        models = []
        for entry in self.ctx.plane.repository.models.values():
            models.append(
                {
                    "name": entry.name,
                    "versions": [str(v) for v in entry.versions],
                    "labels": {k: str(v) for k, v in entry.labels.items()},
                    **version_status(entry, None),
                }
            )
        repo = self.ctx.plane.repository
        cards = openai_codec.models_list(list(repo.models), int(self.ctx.started), repo.context_lengths())
        self.write_json({**cards, "models": models})
