"""Long work on a worker thread that leaves the IO loop its turn.

Large bodies are read in a process of their own (``modelserver.reading``); what stays in the
server's process (a large body on a mapped path, a chat template rendered over megabytes) runs on
a worker thread, which shares the GIL with the IO loop, and three things let a worker keep it for
50-200 ms at ten megabytes, long enough for a liveness probe to miss its beat:

- the cyclic collector: making a million lists sets off full collections every time the tracked
  objects grow by a quarter, and each walks every list made so far in one step;
- freeing a million lists at once when the last reference goes, also one step;
- a loop of short calls that each release and take back the GIL (numpy's casts do): a thread
  waiting for the GIL is woken each time, finds it taken again, and never asks the holder to let
  go (CPython asks only after a whole switch interval passed with no release).

``collector_paused``, ``dismantle`` and ``let_others_run`` are the three answers (the first two
also save the reader process time).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_pause_lock = threading.Lock()
_pauses = 0
_was_enabled = True


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while a large body becomes Python values (JSON values
    hold no cycles); on again, as it was, when the last such reading ends (readings on several
    threads nest)."""
    global _pauses, _was_enabled
    with _pause_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()


def let_others_run() -> None:
    """Give the GIL away for a moment, long enough for a waiting thread to take it: called between
    the steps of a long loop on a worker thread (a few microseconds when nobody waits)."""
    time.sleep(0)


#: flat lists are emptied this many items at a time by ``dismantle``
_PIECE = 4096


def dismantle(value: Any, depth: int = 0) -> None:
    """Free a large body's Python values a piece at a time, in place: a row, or a few thousand
    numbers, at a time, with the interpreter free to switch threads in between. Only for values
    nothing will read again."""
    if depth > 64:  # deeper than any tensor: whatever is left goes at once
        return
    if isinstance(value, dict):
        for item in value.values():
            dismantle(item, depth + 1)
    elif isinstance(value, list) and value:
        if isinstance(value[-1], (list, dict)):
            while value:
                dismantle(value.pop(), depth + 1)
        else:
            while value:
                del value[-_PIECE:]
