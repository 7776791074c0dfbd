"""Which of a model repository's models are loaded: the load policy, the memory budget, and the
requests that hold a model while they run.

With ``--model-repository``, every model of the repository is known by name but loaded only as the
load policy says: ``all`` loads each at start (in turn; one that fails is UNAVAILABLE with its
reason, and the server is ready all the same), ``on-demand`` loads one when a request (or a load
call) first asks for it. A load runs on a thread of its own, one at a time; requests that arrive
for a model while it loads wait for that one load, each no longer than the request timeout.

The memory budget (``--max-loaded-bytes``) counts what each loaded model costs: its files' size
(its weights, held once in memory) plus a model's own overhead (graph, functions, Python objects),
the median of what the latest loads into fresh memory added beyond their files; and at least the
resident memory its load added (read from ``/proc/self/statm`` around it, after its format's runtime
has started once in the process). A load after an unload reuses the memory given up, so its RSS
growth alone would understate it. Room is made for that and for what a load holds only while it runs
(its peak above what stays, from ``VmHWM``). When a load would pass the budget, the least recently
used models with no request in flight (and none waiting for them) are unloaded first; when every
other loaded model is busy, the load waits for one to finish, bounded by the request timeout. A
model whose files alone are bigger than the whole budget, or whose load took more than it, fails to
load with a message that says so. After an unload the collector runs and the heap's free pages go
back to the system, so the memory really comes back.

A request holds the model it uses (``acquire``, with a holder: the request cycle) until it ends
(``release``): an unload asked for while requests hold the model takes it out of service at once and
is done when the last of them ends.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from modelserver import reading
from modelserver.errors import LoadFailed, ModelLoadError, NotReady
from modelserver.interface import Servable
from modelserver.metrics import Metrics
from modelserver.runtime import formats
from modelserver.runtime.formats import KERAS_SUFFIXES, Loader
from modelserver.runtime.repository import (
    STATES,
    ModelEntry,
    ModelRepository,
    files_size,
    files_stamp,
    list_repository,
    load_entry,
    unload_entry,
)
from modelserver.settings import Settings

log = logging.getLogger("modelserver.repository")

#: a request for a name an S3 repository does not hold lists it again at most this often
RESCAN_SECONDS = 1.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


class Holder(Protocol):
    """What holds models while it runs (a request cycle): the entries it acquired."""

    leases: list[ModelEntry] | None


def rss_bytes() -> int:
    """This process's resident memory."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def reset_peak() -> None:
    """Start this process's peak resident memory (VmHWM) afresh from its current one."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_bytes() -> int:
    """This process's peak resident memory since ``reset_peak``."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class ModelManager:
    """Loads, unloads and evicts a repository's models (see the module doc)."""

    def __init__(self, repository: ModelRepository, settings: Settings, metrics: Metrics, loader: Loader,
                 forget: Callable[[str], None] | None = None) -> None:
        self.repo = repository
        self.settings = settings
        self.metrics = metrics
        self.loader = loader
        #: told the name of a model that was unloaded (the dispatcher drops what it kept of it)
        self.forget = forget
        self.budget = settings.max_loaded_bytes
        self.on_demand = settings.load_policy == "on-demand"
        self.loaded_bytes = 0
        self._loads: dict[str, asyncio.Future[None]] = {}
        self._one_at_a_time: asyncio.Lock | None = None
        self._released: asyncio.Event | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self._last_scan = 0.0
        self._scanning: asyncio.Future[None] | None = None
        #: the formats whose runtime has started (``ModelFormat.prepare``)
        self._prepared: set[str] = set()
        #: what the latest loads into fresh memory took beyond their files (a model's own overhead:
        #: its graph, functions and Python objects)
        self._overheads: list[int] = []
        #: a model was unloaded since the last load: the next load reuses its memory, and its RSS
        #: growth says less than what it takes
        self._reused = False
        #: what the latest loads held only while they ran (their peak above what stayed)
        self._transients: list[int] = []

    # -- the repository's contents ---------------------------------------------------------------
    async def scan(self) -> None:
        """Find the repository's models: new ones are registered (not loaded), and ones gone from it
        that are not loaded are dropped. Calls while one runs wait for that one."""
        if self._scanning is None:
            self._scanning = asyncio.ensure_future(self._scan())
            self._scanning.add_done_callback(lambda _: setattr(self, "_scanning", None))
        await asyncio.shield(self._scanning)

    async def _scan(self) -> None:
        root = self.repo.root
        assert root is not None
        self._last_scan = time.monotonic()
        loop = asyncio.get_running_loop()
        if root.startswith("s3://"):
            from modelserver import s3

            try:
                found: dict[str, tuple[str, Path | None]] = {
                    name: (uri, None) for name, uri in (await loop.run_in_executor(None, s3.list_models, root, KERAS_SUFFIXES)).items()
                }
            except s3.S3Error as e:
                log.error("model repository could not be listed", extra={"repository": root, "error": str(e)})
                return
        else:
            listed = await loop.run_in_executor(None, list_repository, Path(root))
            found = {name: (str(path), path) for name, path in listed.items()}
        for name, (source, path) in found.items():
            if name not in self.repo.models:
                self.repo.register_lazy(name, source, path)
        for name in [n for n, e in self.repo.models.items() if n not in found]:
            entry = self.repo.models[name]
            if not (entry.loaded or entry.loading or entry.in_flight):
                del self.repo.models[name]
        self.gauges()

    async def start(self) -> None:
        """The first pass: find the models, and with the policy ``all`` load each in turn."""
        await self.scan()
        if not self.on_demand:
            for entry in list(self.repo.models.values()):
                try:
                    await self.ensure(entry)
                except (LoadFailed, NotReady):
                    pass  # recorded on the entry: UNAVAILABLE with its reason
        self.repo.started = True

    # -- requests ------------------------------------------------------------------------------------
    async def acquire(self, name: str, version: str | None, label: str | None, holder: Holder | None) -> Servable:
        """The servable a request names, loaded first when the policy is on-demand; held by
        ``holder`` (not unloaded under it) until ``release``."""
        repo = self.repo
        if name not in repo.models and self._may_hold(name):
            await self.scan()
        entry = repo.entry(name)  # NotFound for a name the repository does not hold
        if self.on_demand:
            await self._loaded_for_request(entry)
        servable = repo.resolve(name, version, label)
        if holder is not None:
            entry.in_flight += 1
            if holder.leases is None:
                holder.leases = [entry]
            else:
                holder.leases.append(entry)
        return servable

    def _may_hold(self, name: str) -> bool:
        """Whether the repository may hold a model of this name it did not when last looked at: in a
        directory, a look at that name; in S3, a listing at most every RESCAN_SECONDS."""
        root = self.repo.root
        assert root is not None
        if self._scanning is not None:
            return True
        if root.startswith("s3://"):
            return time.monotonic() - self._last_scan >= RESCAN_SECONDS
        if "/" in name or name.startswith("."):
            return False
        base = Path(root)
        return (base / name).is_dir() or any((base / f"{name}{suffix}").is_file() for suffix in KERAS_SUFFIXES)

    async def _loaded_for_request(self, entry: ModelEntry) -> None:
        """On demand: wait for an unload under way, then load the model (or wait for its load), unless
        it failed and its files have not changed since. While a request waits, its model is not
        evicted (``wanted``); if it is unloaded by a call all the same, it is loaded again (a few times
        at most, within the request timeout)."""
        deadline = time.monotonic() + self.settings.timeout_seconds
        entry.wanted += 1
        try:
            for _ in range(3):
                while entry.unload_pending and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                if entry.loaded and not entry.unload_pending:
                    return
                if not (entry.loading or entry.failed_stamp is None or self._files_changed(entry)):
                    return  # failed, and nothing changed: its requests get the reason
                self.metrics.load_waits.labels(entry.name).inc()
                await self.wait_for_load(entry)
        finally:
            entry.wanted -= 1

    def release(self, leases: list[ModelEntry]) -> None:
        """A request ended: the models it held are idle unless others hold them."""
        now = time.monotonic()
        for entry in leases:
            entry.in_flight -= 1
            entry.last_used = now
            if entry.in_flight == 0:
                if entry.unload_pending:
                    self._unload_now(entry, entry.unloaded_reason or "unloaded")
                if self._released is not None:
                    self._released.set()

    async def wait_for_load(self, entry: ModelEntry) -> None:
        """Load ``entry`` (or wait for its load under way), no longer than the request timeout."""
        try:
            await asyncio.wait_for(asyncio.shield(self._load_once(entry)), self.settings.timeout_seconds)
        except TimeoutError:
            raise NotReady(
                f"model {entry.name!r} is still loading after {self.settings.timeout_seconds:g} s; try again"
            ) from None
        except LoadFailed as e:
            raise NotReady(e.message) from None

    def _files_changed(self, entry: ModelEntry) -> bool:
        return entry.path is not None and files_stamp(entry.path) != entry.failed_stamp

    # -- the repository API -------------------------------------------------------------------------
    async def load(self, name: str) -> None:
        """Load a model (again) as asked: its files are looked at anew; LoadFailed says why not."""
        if name not in self.repo.models:
            await self.scan()
        entry = self.repo.entry(name)
        if entry.loaded and not entry.unload_pending:
            return
        entry.failed_stamp, entry.error = None, ""
        await self.ensure(entry)

    async def ensure(self, entry: ModelEntry) -> None:
        """Load ``entry`` unless it is loaded; LoadFailed (or NotReady: the budget is held) if it cannot be."""
        await self._load_once(entry)

    def _load_once(self, entry: ModelEntry) -> asyncio.Future[None]:
        """The one load of ``entry`` under way, started if none is."""
        future = self._loads.get(entry.name)
        if future is None:
            future = self._loads[entry.name] = asyncio.ensure_future(self._load(entry))
            future.add_done_callback(functools.partial(self._done, entry.name))
        return future

    def _done(self, name: str, future: asyncio.Future[None]) -> None:
        self._loads.pop(name, None)
        if not future.cancelled():
            future.exception()  # seen here: no "never retrieved" warning when nobody waited for it

    async def unload(self, name: str, reason: str = "unloaded") -> None:
        """Take a model out of service now; its memory goes when the requests holding it end."""
        entry = self.repo.entry(name)
        if entry.loading:
            try:
                await self._load_once(entry)
            except (LoadFailed, NotReady):
                pass
        if not entry.loaded:
            entry.unloaded_reason = reason
            return
        if entry.in_flight:
            entry.unload_pending, entry.unloaded_reason = True, reason
            log.info("model unload waits for its requests", extra={"model": name, "in_flight": entry.in_flight})
            return
        self._unload_now(entry, reason)

    # -- loading and unloading ----------------------------------------------------------------------
    async def _load(self, entry: ModelEntry) -> None:
        if self._one_at_a_time is None:
            self._one_at_a_time, self._released = asyncio.Lock(), asyncio.Event()
        entry.loading = True
        try:
            async with self._one_at_a_time:
                if entry.loaded and not entry.unload_pending:
                    return
                await self._load_locked(entry)
        finally:
            entry.loading = False

    async def _load_locked(self, entry: ModelEntry) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            path = await loop.run_in_executor(self._pool, self._local_files, entry)
            entry.find_versions(path)
        except (ModelLoadError, OSError, ValueError) as e:
            self._failed(entry, getattr(e, "message", None) or str(e), started)
            raise LoadFailed(f"model {entry.name!r} could not be loaded: {entry.error}") from None
        files = await loop.run_in_executor(self._pool, files_size, path)
        if self.budget and files > self.budget:
            self._failed(entry, f"bigger than the memory budget: its files take {human(files)}, and --max-loaded-bytes "
                         f"is {human(self.budget)}", started)
            raise LoadFailed(f"model {entry.name!r} could not be loaded: {entry.error}")
        # room for the model and for what its load holds only while it runs (parsed graphs, buffers)
        transient = int(statistics.median(self._transients)) if self._transients else 0
        need = min(self.estimate(entry, files) + transient, self.budget) if self.budget else 0
        await self._make_room(need, entry)
        await loop.run_in_executor(self._pool, self._prepare, entry)
        reset_peak()
        before = rss_bytes()
        await loop.run_in_executor(self._pool, lambda: load_entry(entry, self.loader, warmup=self.settings.warmup))
        if not entry.ready:
            reason = "; ".join(f"version {v.version}: {v.error}" for v in entry.versions.values() if v.error)
            self._unload_now(entry, "failed")  # versions that did load go too: a model is loaded whole
            self._failed(entry, reason or "not loaded", started)
            raise LoadFailed(f"model {entry.name!r} could not be loaded: {entry.error}")
        now = rss_bytes()
        grew = now - before
        self._transients = [*self._transients[-49:], max(0, peak_bytes() - now)]
        if not self._reused:
            self._overheads = [*self._overheads[-49:], max(0, grew - files)]
        self._reused = False
        cost = max(grew, self.estimate_new(files))
        for vs in entry.versions.values():
            engine = getattr(vs.servable, "engine", None)
            if engine is not None:
                self.metrics.watch_engine(entry.name, engine)
        entry.measured = entry.charge = cost
        self.loaded_bytes += cost
        entry.error, entry.failed_stamp, entry.unloaded_reason = "", None, ""
        entry.last_used = time.monotonic()
        seconds = time.monotonic() - started
        self.metrics.model_loads.labels(entry.name, "loaded").inc()
        self.metrics.model_load_seconds.labels(entry.name).observe(seconds)
        self.gauges()
        # a loaded model is hundreds of thousands of long-lived objects: out of the collector's sight, the
        # full collections that run now and then under load do not walk them (an unload collects them)
        gc.freeze()
        log.info("model in memory", extra={"model": entry.name, "bytes": cost, "files_bytes": files,
                                           "loaded_bytes": self.loaded_bytes, "seconds": round(seconds, 3)})
        if self.budget and cost > self.budget:
            self._unload_now(entry, "failed")
            self._failed(entry, f"bigger than the memory budget: its load took {human(cost)}, and --max-loaded-bytes "
                         f"is {human(self.budget)}", started, counted=False)
            raise LoadFailed(f"model {entry.name!r} could not be loaded: {entry.error}")
        if self.budget and self.loaded_bytes > self.budget:  # it took more than estimated: make room after
            self._evict(self.loaded_bytes - self.budget, keep=entry)

    def _prepare(self, entry: ModelEntry) -> None:
        """Start the runtime of each version's format (once each) before the memory is read."""
        for vs in entry.versions.values():
            try:
                fmt = formats.choose(vs.path, self.settings.format)
            except ModelLoadError:
                continue  # the load says what is wrong
            if fmt.kind not in self._prepared:
                if fmt.prepare is not None:
                    formats.import_modules(self.settings)
                    fmt.prepare()
                self._prepared.add(fmt.kind)

    def _local_files(self, entry: ModelEntry) -> Path:
        """Where the model's files are: its directory, or for s3:// a fetched copy (the fetch cache)."""
        if entry.source.startswith("s3://"):
            from modelserver import fetch

            try:
                return fetch.fetch_to_cache(entry.source)
            except fetch.FetchError as e:
                raise ModelLoadError(str(e)) from None
        if entry.path is None:
            raise ModelLoadError(f"model {entry.name!r} has no files")
        return entry.path

    def estimate(self, entry: ModelEntry, files: int) -> int:
        """What loading ``entry`` will take: what it was counted at last time, else ``estimate_new``."""
        return entry.measured or self.estimate_new(files)

    def estimate_new(self, files: int) -> int:
        """A model of ``files`` bytes: its files (its weights, held once in memory) plus the median
        overhead of the latest loads into fresh memory. A load's count is the larger of this and
        the RSS it added: after an unload the next load reuses the memory given up, and its RSS
        growth alone would understate it."""
        return files + (int(statistics.median(self._overheads)) if self._overheads else 0)

    def _failed(self, entry: ModelEntry, reason: str, started: float, *, counted: bool = True) -> None:
        entry.error = reason
        entry.failed_stamp = files_stamp(entry.path) if entry.path is not None and entry.path.exists() else None
        if entry.failed_stamp is None:
            entry.failed_stamp = (0, 0)
        if counted:
            self.metrics.model_loads.labels(entry.name, "failed").inc()
        log.error("model load failed", extra={"model": entry.name, "error": reason,
                                              "seconds": round(time.monotonic() - started, 3)})

    async def _make_room(self, need: int, entry: ModelEntry) -> None:
        """Unload idle models, least recently used first, until ``need`` fits the budget; while the
        rest are busy, wait for one to finish (no longer than the request timeout)."""
        if not self.budget:
            return
        deadline = time.monotonic() + self.settings.timeout_seconds
        assert self._released is not None
        while self.loaded_bytes + need > self.budget:
            self._evict(self.loaded_bytes + need - self.budget, keep=entry)
            if self.loaded_bytes + need <= self.budget:
                return
            left = deadline - time.monotonic()
            busy = [e.name for e in self.repo.models.values() if e.loaded and e.in_flight]
            if left <= 0:
                raise NotReady(
                    f"model {entry.name!r} needs about {human(need)} and the memory budget of {human(self.budget)} is "
                    f"held by models with requests in flight ({', '.join(busy[:10])}); try again"
                )
            self._released.clear()
            try:
                await asyncio.wait_for(self._released.wait(), left)
            except TimeoutError:
                pass

    def _evict(self, amount: int, keep: ModelEntry) -> None:
        """Unload idle models, least recently used first, until ``amount`` bytes are free (or none is idle)."""
        idle = sorted((e for e in self.repo.models.values()
                       if e is not keep and e.loaded and not (e.in_flight or e.wanted or e.unload_pending or e.loading)),
                      key=lambda e: e.last_used)
        freed = 0
        for victim in idle:
            if freed >= amount:
                break
            freed += victim.charge
            self.metrics.model_evictions.labels(victim.name).inc()
            log.info("model evicted", extra={"model": victim.name, "bytes": victim.charge, "for": keep.name})
            self._unload_now(victim, "evicted to make room in the memory budget")

    def _unload_now(self, entry: ModelEntry, reason: str) -> None:
        unload_entry(entry, reason)
        self._reused = True
        self.loaded_bytes -= entry.charge
        entry.charge = 0
        if self.forget is not None:
            self.forget(entry.name)
        # the model's objects hold reference cycles: collect them now (the loaded models are frozen out of
        # the collector's sight between unloads, see _load_locked), then give the heap's free pages back
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        reading.release_memory()
        self.gauges()
        log.info("model unloaded", extra={"model": entry.name, "reason": reason, "loaded_bytes": self.loaded_bytes})

    def gauges(self) -> None:
        """The repository's gauges from its models as they are now (after each change, and on /metrics)."""
        loaded = sum(1 for e in self.repo.models.values() if e.loaded and not e.unload_pending)
        self.metrics.models_loaded.set(loaded)
        self.metrics.loaded_bytes.set(self.loaded_bytes)
        states = dict.fromkeys(STATES, 0)
        for entry in self.repo.models.values():
            states[entry.state()] += 1
        for state, count in states.items():
            self.metrics.repository_models.labels(state).set(count)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
