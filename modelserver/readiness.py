"""Readiness shared by the worker processes of one server (``--workers``): a byte per worker.

The supervisor (``workers``) makes a ``WorkerGroup`` before it forks; each worker sets its own
byte once its models are loaded, and every worker's ``/v2/health/ready`` reads all of them, so a
pod turns ready only when every process behind its port can serve.
"""

from __future__ import annotations

import mmap


class WorkerGroup:
    """What a worker knows of its siblings: its own index and every worker's readiness.

    One byte per worker in an anonymous shared mapping made before the fork, so each worker reads
    the others' flags without any message passing.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.index = -1
        self._flags = mmap.mmap(-1, size)
        self._all = b"\x01" * size

    def set_ready(self, ready: bool) -> None:
        if self.index >= 0:
            self._flags[self.index] = 1 if ready else 0

    def clear(self, index: int) -> None:
        self._flags[index] = 0

    @property
    def ready_count(self) -> int:
        return sum(self._flags[:])

    def all_ready(self) -> bool:
        return self._flags[:] == self._all
