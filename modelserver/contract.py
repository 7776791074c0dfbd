"""What the operator and the model server agree on, as code both import.

The operator builds pods that run ``modelserver serve``, probes them and reads their answers; the
names it needs for that live here (and the server's environment variables come from
``settings.env_name``, derived from the settings declaration), so neither program copies the
other's literals. Standard library only: the operator's image has no TensorFlow, tornado or numpy.
"""

from __future__ import annotations

#: the protocol a deployment presents first (every one is served); ``auto``, the default, is openai for
#: Hugging Face models and v1 for the others
PROTOCOLS = ("auto", "v1", "v2", "openai")
#: how a model is stored; ``auto`` tells it from the files
FORMATS = ("auto", "tensorflow", "keras", "python", "huggingface")
#: when a model repository's models load: all at start, or each on its first request (or load call)
LOAD_POLICIES = ("all", "on-demand")

#: the server's HTTP port in a pod
HTTP_PORT = 8080
#: the server's gRPC port (KServe's and MLServer's too); the standard gRPC health service answers on it
GRPC_PORT = 8081
#: probes: the process answers / every model is loaded and the server is not draining
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
#: Prometheus metrics (no API key); a repository's counts are read from them
METRICS_PATH = "/metrics"
#: the gauge of a repository's models by ``state``, one of ``REPOSITORY_STATES``
REPOSITORY_MODELS_METRIC = "modelserver_repository_models"
REPOSITORY_STATES = ("ready", "loading", "failed", "unloaded")


def model_metadata_path(model: str) -> str:
    """The V2 model metadata path (signature, versions, platform) of one model."""
    return f"/v2/models/{model}"


class NotReadyReason:
    """The ``reason`` code of a 503 answer on ``READY_PATH``: why the server is not ready yet.

    The answer's ``error`` is prose for people; programs (the operator's status) match the code.
    """

    #: models are still loading or warming up
    LOADING = "ModelLoading"
    #: a model failed to load or warm up: it will not become ready without a change
    LOAD_FAILED = "ModelLoadFailed"
    #: this process is ready but a sibling worker process is still loading
    WORKERS_LOADING = "WorkersLoading"
    #: shutting down (SIGTERM, or ``modelserver drain`` before it)
    DRAINING = "Draining"
