"""A model repository under a memory budget: 100 small models in one server, a budget that fits 10.

``make bench-repository`` (or ``python bench/repository.py``):

1. builds the benchmark MLP (``bench/models.py``) and copies it into a repository of ``--models``
   models (each its own model to the server, loaded and unloaded on its own);
2. serves them all at once (``--load-policy all``) and reads the server's RSS and what the models
   are counted at (``modelserver_loaded_model_bytes``): a model's cost, and the memory of them all;
3. serves them on demand with a budget of ``--fit`` models' cost (``--max-loaded-bytes``), and
   sends ``--requests`` V1 requests one after another: most to ``--fit`` hot models, the rest spread
   over all of them (``--cold-share``), so hits and misses both happen; each request is a hit (its
   model was loaded) or a miss (it waited for a load), told from the repository index read before
   it. The server's RSS is sampled after every request;
4. prints p50 and p99 of hits and of misses, the evictions, the highest RSS against the budget plus
   the server's own base (RSS with the runtime started and no model loaded), and the RSS of all
   the models loaded at once, and writes it to ``bench/results/repository.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "modeldeploy" / "bench"))
PY = str(REPO / ".venv" / "bin" / "python")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def call(port: int, path: str, body: object | None = None, method: str = "POST") -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data if method == "POST" else None,
                                 method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metric(port: int, name: str) -> float:
    _, text = call(port, "/metrics", method="GET")
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Server:
    def __init__(self, root: Path, *flags: str, log_path: Path) -> None:
        self.port = free_port()
        argv = [PY, "-m", "modelserver", "serve", "--model-repository", str(root), "--port", str(self.port),
                "--grpc-port", "0", "--log-level", "warning", *flags]
        self.out = log_path.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited; see {log_path}")
            try:
                if call(self.port, "/v2/health/ready", method="GET")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"not ready; see {log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(60)
        self.out.close()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=100)
    p.add_argument("--fit", type=int, default=10, help="the budget fits this many models")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--cold-share", type=float, default=0.1, help="share of requests spread over every model")
    p.add_argument("--out", default=str(HERE / "results" / "repository.md"))
    args = p.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    work = CACHE / "repository"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run([PY, str(HERE / "models.py"), str(CACHE / "models")], check=True, stdout=subprocess.DEVNULL)
    mlp = CACHE / "models" / "mlp" / "1"
    root = work / "models"
    names = [f"customer-{i:03d}" for i in range(args.models)]
    for name in names:
        shutil.copytree(mlp, root / name / "1")
    body = {"instances": np.round(np.random.default_rng(0).standard_normal((1, 32)), 4).tolist()}

    log(f"all {args.models} models loaded at once")
    server = Server(root, "--load-policy", "all", log_path=work / "all.log")
    try:
        rss_all = rss_mb(server.proc.pid)
        counted_all = metric(server.port, "modelserver_loaded_model_bytes")
        assert call(server.port, f"/v1/models/{names[-1]}:predict", body)[0] == 200
    finally:
        server.stop()
    cost = counted_all / args.models
    budget = int(cost * args.fit)
    log(f"a model is counted at {cost / 1e6:.2f} MB; budget {budget / 1e6:.1f} MB")

    server = Server(root, "--load-policy", "on-demand", "--max-loaded-bytes", str(budget), log_path=work / "demand.log")
    try:
        # the server's own base: the runtime started, no model loaded
        assert call(server.port, f"/v1/models/{names[0]}:predict", body)[0] == 200
        assert call(server.port, f"/v2/repository/models/{names[0]}/unload")[0] == 200
        time.sleep(0.5)
        base = rss_mb(server.proc.pid)
        rng = np.random.default_rng(1)
        hot = names[: args.fit]
        hits: list[float] = []
        misses: list[float] = []
        peak, errors = base, 0
        for _ in range(args.requests):
            name = str(rng.choice(names if rng.random() < args.cold_share else hot))
            _, raw = call(server.port, "/v2/repository/index")
            ready = {row["name"] for row in json.loads(raw) if row["state"] == "READY"}
            t0 = time.perf_counter()
            status, _ = call(server.port, f"/v1/models/{name}:predict", body)
            ms = (time.perf_counter() - t0) * 1000
            errors += status != 200
            (hits if name in ready else misses).append(ms)
            peak = max(peak, rss_mb(server.proc.pid))
        evictions = metric(server.port, "modelserver_model_evictions_total")
        loaded_now = metric(server.port, "modelserver_models_loaded")
        counted_now = metric(server.port, "modelserver_loaded_model_bytes")
    finally:
        server.stop()

    ended = time.strftime("%H:%M", time.gmtime())
    given = " ".join(sys.argv[1:])
    if os.environ.get("BENCH_VIA_MAKE"):
        command = f'make bench-repository BENCH_ARGS="{given}"' if given else "make bench-repository"
    else:
        command = "python bench/repository.py " + given
    text = "\n".join([
        f"Command: `{command}`  ",
        f"Run {started} to {ended} UTC on {os.cpu_count()} cores; the client runs on the same machine, one request at "
        f"a time. {args.models} copies of the benchmark MLP (32-256-256-10), each its own model; {args.requests} V1 "
        f"requests of one row, {1 - args.cold_share:.0%} to {args.fit} hot models and {args.cold_share:.0%} spread "
        "over all of them; a hit found its model loaded, a miss waited for its load (and any eviction).",
        "",
        "| what | figure |",
        "| --- | --- |",
        f"| a model's cost (loaded bytes / models, all loaded) | {cost / 1e6:.2f} MB |",
        f"| budget (`--max-loaded-bytes`, {args.fit} models) | {budget / 1e6:.1f} MB |",
        f"| hits: count, p50, p99 | {len(hits)}, {pct(hits, 50):.2f} ms, {pct(hits, 99):.2f} ms |",
        f"| misses (a load): count, p50, p99 | {len(misses)}, {pct(misses, 50):.1f} ms, {pct(misses, 99):.1f} ms |",
        f"| errors | {errors} |",
        f"| evictions | {evictions:.0f} |",
        f"| loaded at the end: models, counted bytes | {loaded_now:.0f}, {counted_now / 1e6:.1f} MB |",
        f"| server RSS: base (runtime started, nothing loaded) | {base:.0f} MB |",
        f"| server RSS: highest during the run / base + budget | {peak:.0f} MB / {base + budget / 2**20:.0f} MB |",
        f"| server RSS with all {args.models} models loaded at once | {rss_all:.0f} MB |",
    ]) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("# Model repository benchmark\n\n" + text)
    log(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
