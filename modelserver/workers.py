"""Several server processes on one port: a parent that binds, forks and supervises; workers that serve.

``modelserver serve --workers N`` (N > 1) runs ``run`` instead of a single server. The parent never
imports TensorFlow, tornado's web stack or prometheus_client: it binds one listening socket per
worker with ``SO_REUSEPORT`` (the kernel spreads new connections over them), forks the workers and
supervises them. Each worker loads its own copy of the models and runs its own IO loop, exactly as
a single server does.

- SIGTERM and SIGINT are forwarded to every worker, which drains as a single server does; the
  parent exits 0 once every worker has exited cleanly, 1 otherwise. SIGUSR1 (``modelserver drain``,
  sent to PID 1 in a container, which is this parent) is forwarded as well.
- A worker that dies while the server is not stopping is replaced. Its listening socket stays open
  in the parent, so connections waiting on it are served by the replacement. More than
  ``MAX_RESTARTS`` replacements within ``RESTART_WINDOW`` seconds stop the whole server (exit 1).
- Readiness is shared: a byte per worker in memory mapped before the fork says whether that worker
  has loaded its models, and every worker answers ``/v2/health/ready`` with 200 only when all have.
- Metrics use prometheus_client's multiprocess mode: each worker writes its values to files in
  ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory unless that variable is set), and
  ``/metrics`` on any worker reports every worker's counts summed.
- The CPUs are shared out: unless set explicitly, each worker runs ``CPUs / N`` model threads and
  TensorFlow thread pools of that size (``share_cpus``).
- Generative models are served by one process only: each worker would hold its own key/value cache
  and decode its own, smaller batches. An explicit ``--workers N`` (N > 1) is refused for them, and
  ``--workers 0`` (one per CPU) means one worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import glob
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from types import FrameType

from modelserver.errors import ModelLoadError
from modelserver.readiness import WorkerGroup
from modelserver.settings import Settings

log = logging.getLogger("modelserver.workers")

#: replacements of dead workers allowed within RESTART_WINDOW seconds before the server gives up
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: after SIGTERM, workers get their drain time plus this long to exit before they are killed
EXIT_GRACE = 10.0
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
_PR_SET_PDEATHSIG = 1


def cpu_count() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota if it has one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def is_generative(settings: Settings, path: Path) -> bool:
    """True when a version of the model is a Hugging Face causal LM (served by the generation engine)."""
    from modelserver.runtime import formats
    from modelserver.runtime.repository import discover_versions

    for version_dir in discover_versions(path).values():
        try:
            if formats.choose(version_dir, settings.format).generative:
                return True
        except ModelLoadError:
            continue  # reported when the workers load it, as a single server reports it
    return False


def count(settings: Settings, path: Path, name: str) -> int:
    """How many workers to run; ValueError (or ModelLoadError) for a setting or model that cannot work."""
    from modelserver.runtime.repository import ModelRepository

    if settings.workers < 0:
        raise ValueError(f"workers must be 0 (one per CPU) or more, got {settings.workers}")
    ModelRepository().register(name, path, settings.labels())  # the checks a single server makes first
    n = settings.workers or cpu_count()
    if n > 1 and is_generative(settings, path):
        if settings.workers:
            raise ValueError(
                f"--workers {n}: a generative model is served by one process (each worker would hold its "
                "own key/value cache and decode smaller batches); use --workers 1 and more replicas"
            )
        log.info("one worker for a generative model", extra={"cpus": n})
        n = 1
    return n


def bind(host: str, port: int, n: int) -> list[list[socket.socket]]:
    """One list of listening sockets per worker, all on the same port with SO_REUSEPORT.

    A plain bind first makes sure nothing listens on the port already: with SO_REUSEPORT alone, a
    second server started by the same user would silently take a share of the connections.
    """
    from tornado.netutil import bind_sockets

    probe = bind_sockets(port, host)
    port = int(probe[0].getsockname()[1])
    for s in probe:
        s.close()
    return [bind_sockets(port, host, reuse_port=True) for _ in range(n)]


def _metrics_dir() -> tuple[str, bool]:
    """The directory for the workers' metric files, emptied; and whether it was made here."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given:
        return tempfile.mkdtemp(prefix="modelserver-metrics-"), True
    os.makedirs(given, exist_ok=True)
    for f in glob.glob(os.path.join(given, "*.db")):
        os.remove(f)
    return given, False


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux), so workers never outlive it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(0)


class Supervisor:
    """Forks the workers, forwards signals to them, replaces the ones that die, and waits for them."""

    def __init__(self, settings: Settings, path: Path, name: str, sockets: list[list[socket.socket]]) -> None:
        self.settings = settings
        self.path = path
        self.name = name
        self.sockets = sockets
        self.group = WorkerGroup(len(sockets))
        self.children: dict[int, int] = {}  # pid -> worker index
        self.signals: deque[int] = deque()
        self.restarts: deque[float] = deque()
        self.stopping = False
        self.deadline = math.inf
        self.killed = False
        self.code = 0

    # -- parent ---------------------------------------------------------------------------------
    def run(self) -> int:
        for sig in FORWARDED:
            signal.signal(sig, self._on_signal)
        for index in range(len(self.sockets)):
            self._spawn(index)
        log.info("workers started", extra={"workers": len(self.sockets), "pids": sorted(self.children)})
        while self.children:
            self._handle_signals()
            self._reap()
            if self.stopping and not self.killed and time.monotonic() > self.deadline:
                log.error("workers did not exit in time: killing them", extra={"pids": sorted(self.children)})
                self._signal_all(signal.SIGKILL)
                self.killed, self.code = True, 1
            time.sleep(0.05)
        log.info("stopped", extra={"code": self.code})
        return self.code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.popleft()
            if sig in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
                log.info("stopping workers", extra={"signal": signal.Signals(sig).name})
                self._stop(sig)
            else:
                self._signal_all(sig)

    def _stop(self, sig: int) -> None:
        self.stopping = True
        self.deadline = time.monotonic() + self.settings.drain_seconds + EXIT_GRACE
        self._signal_all(sig)

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.children.pop(pid, None)
            if index is None:
                continue  # as PID 1 in a container, orphans of other processes land here too
            self.group.clear(index)
            self._forget_gauges(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code not in (0, -signal.SIGTERM, -signal.SIGINT) and not self.killed:
                    log.error("worker failed while stopping", extra={"worker": index, "pid": pid, "code": code})
                    self.code = 1
                continue
            log.error("worker exited unexpectedly", extra={"worker": index, "pid": pid, "code": code})
            now = time.monotonic()
            while self.restarts and now - self.restarts[0] > RESTART_WINDOW:
                self.restarts.popleft()
            if len(self.restarts) >= MAX_RESTARTS:
                log.error(
                    "workers keep dying: stopping the server",
                    extra={"restarts": len(self.restarts), "window_seconds": RESTART_WINDOW},
                )
                self.code = 1
                self._stop(signal.SIGTERM)
                continue
            self.restarts.append(now)
            log.info("worker replaced", extra={"worker": index, "pid": self._spawn(index)})

    @staticmethod
    def _forget_gauges(pid: int) -> None:
        """Drop a dead worker's live gauges (in-flight requests, queue depth, readiness) from /metrics."""
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        for f in glob.glob(os.path.join(folder, f"gauge_live*_{pid}.db")) if folder else []:
            with contextlib.suppress(OSError):
                os.remove(f)

    def _spawn(self, index: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children[pid] = index
            return pid
        code = 1
        try:
            code = self._worker(index, parent)
        except BaseException:
            log.exception("worker failed", extra={"worker": index})
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    # -- worker ---------------------------------------------------------------------------------
    def _worker(self, index: int, parent: int) -> int:
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        _die_with_parent(parent)
        for i, socks in enumerate(self.sockets):
            if i != index:
                for s in socks:
                    s.close()
        self.group.index = index
        from modelserver.server import app

        ctx = app.build_context(self.settings, self.path, self.name, workers=self.group)
        app.run_loop(app.serve(ctx, sockets=self.sockets[index]), self.settings.event_loop)
        for sig in FORWARDED:  # a late signal must not turn a clean exit into a failure
            signal.signal(sig, signal.SIG_IGN)
        return 0


def share_cpus(settings: Settings, n: int) -> Settings:
    """Each of ``n`` workers gets its share of the CPUs for model threads and TensorFlow's pools.

    Left at their defaults, every worker would size its thread pools for the whole machine, and
    ``n`` workers would run ``n`` times as many busy threads as there are CPUs. Settings given
    explicitly are kept.
    """
    share = max(1, cpu_count() // n)
    return dataclasses.replace(
        settings,
        model_threads=settings.model_threads or share,
        tf_threads=settings.tf_threads or share,
    )


def run(settings: Settings, path: Path, name: str, n: int) -> int:
    """Serve with ``n`` worker processes until SIGTERM; the process's exit code."""
    try:
        sockets = bind(settings.host, settings.port, n)
    except OSError as e:
        print(f"modelserver: cannot listen on {settings.host}:{settings.port}: {e}", file=sys.stderr)
        return 2
    folder, made = _metrics_dir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        return Supervisor(share_cpus(settings, n), path, name, sockets).run()
    finally:
        for socks in sockets:
            for s in socks:
                s.close()
        if made:
            shutil.rmtree(folder, ignore_errors=True)


def ensure_demo_isolated() -> Path:
    """The demo model, built in a child process: a parent that forks workers must not import TensorFlow."""
    from modelserver import demo

    target = demo.default_dir()
    if not (target / "1" / "saved_model.pb").is_file():
        subprocess.run([sys.executable, "-m", "modelserver", "demo", str(target)], check=True,
                       stdout=subprocess.DEVNULL)
    return target
