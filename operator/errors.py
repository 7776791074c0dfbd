"""The operator's error hierarchy, and the one place that maps it to kopf's retry behaviour.

A ``SpecError`` is the user's to fix: recorded in status and not retried hot. A ``TransientError``
(conflicts, 5xx, timeouts) is retried with backoff. Anything else is a bug and kopf retries it too.
"""

from __future__ import annotations

import kopf


class OperatorError(Exception):
    """Base class for errors the operator expects."""


class SpecError(OperatorError):
    """The ModelDeployment's spec cannot be served as written; the message says what to fix."""


class TransientError(OperatorError):
    """The API server or the cluster could not do it now; try again later."""

    def __init__(self, message: str, delay: float = 10.0) -> None:
        super().__init__(message)
        self.delay = delay


#: how long to wait before retrying after each kind of transient failure
RETRY_STATUSES = {409: 2.0, 429: 5.0, 500: 5.0, 502: 5.0, 503: 5.0, 504: 5.0}


def classify_api_error(status: int | None, reason: str) -> OperatorError:
    """An API server answer as one of ours: retryable for conflicts, throttling and 5xx."""
    if status is None or status in RETRY_STATUSES:
        return TransientError(f"API server answered {status}: {reason}", RETRY_STATUSES.get(status or 0, 5.0))
    if status == 422:
        return SpecError(f"the API server refused a child resource: {reason}")
    return TransientError(f"API server answered {status}: {reason}", 15.0)


MAX_DELAY = 300.0


def backoff(base: float, retry: int) -> float:
    """Exponential backoff: ``base`` doubled for each earlier retry, at most five minutes."""
    return min(base * 2 ** min(retry, 16), MAX_DELAY)


def to_kopf(exc: BaseException, retry: int = 0) -> Exception:
    """kopf's view of our errors: permanent (no retry) or temporary (retry after a growing delay)."""
    if isinstance(exc, SpecError):
        return kopf.PermanentError(str(exc))
    if isinstance(exc, TransientError):
        return kopf.TemporaryError(str(exc), delay=backoff(exc.delay, retry))
    return kopf.TemporaryError(f"{type(exc).__name__}: {exc}", delay=backoff(15.0, retry))
