"""Side-by-side benchmark: modelserver against KServe, MLServer and a bare tornado hello-world.

``make bench`` (or ``python bench/run.py``) does everything in one run:

1. creates KServe's and MLServer's own virtual environments under a cache directory outside the
   repository (``~/.cache/modeldeploy/bench``; ``BENCH_CACHE`` overrides it), installs wrk from
   Debian if it is missing, and builds ghz (a gRPC load generator, from its Go module) into that
   cache for the gRPC cases;
2. builds the same SavedModels for every server (``bench/models.py``);
3. starts every server on 127.0.0.1, then runs each case on each server in turn (so the servers
   compared in a case see the same load on the machine): checks the answer, drives it with wrk
   for a bounded time, and reads each server's RSS at the end; all of that in several rounds
   (``--rounds``, default 3), since a shared machine's speed drifts by 10-20% over minutes;
4. prints a table of each server's median round (req/s, p50 and p99, with the range of the
   rounds) and the ratios against the targets, and writes it to ``bench/results/latest.md`` with
   the load average seen when each case began.

Nothing is asserted: the numbers depend on the machine and on what else runs on it.
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
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "modeldeploy" / "bench"))
GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz@v0.93.0"
PEERS = {
    "kserve": ["kserve==0.21.*", "tensorflow-cpu"],
    "mlserver": ["mlserver==1.7.1", "tensorflow-cpu"],
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- environments ---------------------------------------------------------------------------------
def peer_python(name: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    venv = CACHE / "venvs" / name
    py = venv / "bin" / "python"
    stamp = venv / (".installed-" + "-".join(PEERS[name]).replace("*", "x").replace("=", ""))
    if not stamp.exists():
        log(f"installing {' '.join(PEERS[name])} into {venv}")
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, cwd=CACHE)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PEERS[name]], check=True, cwd=CACHE)
        stamp.touch()
    return py


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    log("installing wrk from Debian")
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or "wrk"


def ensure_ghz() -> str:
    """ghz, built from its Go module into the cache once (Go comes with ``make cluster``'s toolchain)."""
    ghz = CACHE / "bin" / "ghz"
    if ghz.exists():
        return str(ghz)
    go = shutil.which("go") or "/usr/local/go/bin/go"
    log(f"building {GHZ_MODULE} into {ghz.parent}")
    subprocess.run([go, "install", GHZ_MODULE], check=True, cwd=CACHE,
                   env={**os.environ, "GOBIN": str(ghz.parent)})
    return str(ghz)


# -- request bodies -------------------------------------------------------------------------------
def bodies(out: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    mlp_row = np.round(rng.standard_normal((1, 32)), 4)
    images = np.round(rng.random((32, 28, 28, 1)), 4)
    made = {
        "v1_mlp": {"instances": mlp_row.tolist()},
        "v2_mlp": {"inputs": [{"name": "x", "shape": [1, 32], "datatype": "FP32", "data": mlp_row.ravel().tolist()}]},
        "v1_img32": {"instances": images.tolist()},
        "v2_img32": {"inputs": [{"name": "x", "shape": [32, 28, 28, 1], "datatype": "FP32", "data": images.ravel().tolist()}]},
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, body in made.items():
        paths[name] = out / f"{name}.json"
        paths[name].write_text(json.dumps(body))
    # the same tensors as ModelInferRequest messages with raw contents, for ghz; the model's name is
    # in the message, so each model has its own
    for name, model, arr in (("grpc_mlp", "mlp", mlp_row), ("grpc_img32", "mnist", images)):
        paths[name] = out / f"{name}.bin"
        paths[name].write_bytes(infer_request(model, arr).SerializeToString())
    paths["protoset"] = out / "grpc_service.protoset"
    paths["protoset"].write_bytes(protoset())
    return paths


def infer_request(model: str, arr: np.ndarray) -> service_pb2.ModelInferRequest:  # noqa: F821
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype="FP32")
    tensor.shape.extend(arr.shape)
    request.raw_input_contents.append(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return request


def protoset() -> bytes:
    """The Open Inference Protocol's service, with what it imports, as a FileDescriptorSet for ghz
    (taken from the descriptors tritonclient ships, generated from the published .proto files)."""
    from google.protobuf import descriptor_pb2
    from tritonclient.grpc import service_pb2

    files = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(fd) -> None:  # type: ignore[no-untyped-def]
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            add(dep)
        proto = files.file.add()
        fd.CopyToProto(proto)

    add(service_pb2.DESCRIPTOR)
    return files.SerializeToString()


# -- servers --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    total = 0
    pids = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def tree_pids(pid: int) -> list[int]:
    """A process and its descendants (worker processes, a peer's model processes)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            kids = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()
        except OSError:
            kids = []
        todo += [int(k) for k in kids]
    return pids


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads and its live descendants, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


@dataclass
class Server:
    label: str
    argv: list[str]
    port: int
    ready_path: str
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    processes: int = 1
    grpc_port: int = 0
    #: seconds from the process's start to its first ready answer (each server starts alone)
    ready_seconds: float = 0.0

    def start(self, logs: Path, timeout: float = 180) -> None:
        self.log_path = logs / f"{self.label}.log"
        out = self.log_path.open("wb")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **self.env}
        started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd or CACHE, env=env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited ({self.proc.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=2) as r:
                    if r.status == 200:
                        self.ready_seconds = time.monotonic() - started
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.label} not ready after {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _procs(label: str, processes: int) -> str:
    return label if processes == 1 else f"{label}-x{processes}"


def modelserver(model: str, path: Path, workers: int = 1, checkout: Path | None = None, grpc: bool = False) -> Server:
    """modelserver from this checkout, or (``checkout``) the code of another one, run with the same
    environment: ``--baseline`` compares a change with the code it started from, case by case.
    gRPC is served only by the instances that measure it (``grpc``)."""
    port = free_port()
    grpc_port = free_port() if grpc else 0
    argv = [str(REPO / ".venv" / "bin" / "python"), "-m", "modelserver", "serve", str(path.parent), "--name", model,
            "--port", str(port), "--log-level", "warning", "--workers", str(workers)]
    label = "baseline" if checkout else "modelserver"
    env = {"MODELSERVER_GRPC_PORT": str(grpc_port)}
    if checkout:
        # only its modelserver/ goes on the path: the checkout's operator/ would shadow the standard library
        shim = CACHE / "work" / "baseline-path"
        shim.mkdir(parents=True, exist_ok=True)
        link = shim / "modelserver"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(checkout / "modelserver")
        env["PYTHONPATH"] = str(shim)
    name = f"{label}-{model}" + ("-grpc" if grpc else "")
    return Server(_procs(name, workers), argv, port, "/v2/health/ready", env=env, processes=workers, grpc_port=grpc_port)


def kserve(model: str, path: Path, workers: int = 1) -> Server:
    port, grpc_port = free_port(), free_port()
    argv = [str(peer_python("kserve")), str(HERE / "peers" / "kserve_model.py"), "--model_name", model,
            "--model_dir", str(path), "--http_port", str(port), "--grpc_port", str(grpc_port),
            "--enable_latency_logging", "False", "--configure_logging", "False", "--workers", str(workers)]
    return Server(_procs(f"kserve-{model}", workers), argv, port, f"/v1/models/{model}", processes=workers,
                  grpc_port=grpc_port)


def mlserver(model: str, path: Path, work: Path, batching: bool) -> Server:
    label = f"mlserver{'-batching' if batching else ''}-{model}"
    port, grpc_port = free_port(), free_port()
    folder = work / label
    (folder / model).mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "peers" / "mlserver_runtime.py", folder / "runtime.py")
    settings = {"http_port": port, "grpc_port": grpc_port, "metrics_port": free_port(),
                "host": "127.0.0.1", "parallel_workers": 0}
    (folder / "settings.json").write_text(json.dumps(settings))
    model_settings: dict[str, object] = {"name": model, "implementation": "runtime.SavedModelRuntime",
                                         "parameters": {"uri": str(path)}}
    if batching:
        model_settings.update(max_batch_size=32, max_batch_time=0.002)
    (folder / model / "model-settings.json").write_text(json.dumps(model_settings))
    mls = peer_python("mlserver").parent / "mlserver"
    return Server(label, [str(mls), "start", str(folder)], port, f"/v2/models/{model}/ready", cwd=folder,
                  env={"PYTHONPATH": str(folder)}, grpc_port=grpc_port)


def hello(uvloop: bool = False, processes: int = 1) -> Server:
    port = free_port()
    argv = [str(REPO / ".venv" / "bin" / "python"), str(HERE / "peers" / "hello.py"), str(port),
            f"processes={processes}"] + (["uvloop"] if uvloop else [])
    label = _procs("tornado-hello" + ("-uvloop" if uvloop else ""), processes)
    return Server(label, argv, port, "/", processes=processes)


# -- load -----------------------------------------------------------------------------------------
@dataclass
class Result:
    case: str
    server: str
    processes: int
    conns: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    load: str
    #: the lowest and highest req/s of this case's rounds on this server (the row is the median round)
    low: float = 0.0
    high: float = 0.0
    #: the server's CPU time (user + system, all its threads and processes) per answered request, in ms:
    #: it depends far less than req/s on how the scheduler shares the cores with the load generator
    cpu_ms: float = 0.0


def medians(runs: list[Result]) -> list[Result]:
    """One row per case and server: its median round by req/s, with the range of all its rounds."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in runs:
        groups.setdefault((r.case, r.server), []).append(r)
    rows = []
    for group in groups.values():
        ordered = sorted(group, key=lambda r: r.rps)
        mid = ordered[(len(ordered) - 1) // 2]
        mid.low, mid.high = ordered[0].rps, ordered[-1].rps
        mid.errors = sum(r.errors for r in group)
        rows.append(mid)
    return rows


def check(url: str, body: Path | None, key: str) -> list[float]:
    """One request by hand: the server must answer 200 with the expected key; first numbers returned."""
    data = body.read_bytes() if body else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read()
    if body is None:
        return []
    answer = json.loads(text)
    if key == "predictions":
        return np.asarray(answer["predictions"], dtype=np.float64).ravel()[:10].tolist()
    return np.asarray(answer["outputs"][0]["data"], dtype=np.float64).ravel()[:10].tolist()


def wrk(url: str, body: Path | None, conns: int, seconds: int) -> dict[str, float]:
    env = {**os.environ, "BENCH_BODY": str(body) if body else ""}
    threads = 1 if conns == 1 else 2
    argv = [WRK, f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s", str(HERE / "wrk.lua"), url]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    return json.loads(line[len("BENCH_JSON "):])


def check_grpc(target: str, body: Path) -> list[float]:
    """One ModelInfer by hand with tritonclient.grpc: the server must answer; first numbers returned."""
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import service_pb2

    sent = service_pb2.ModelInferRequest.FromString(body.read_bytes())
    x = np.frombuffer(sent.raw_input_contents[0], dtype=np.float32).reshape(tuple(sent.inputs[0].shape))
    tensor = grpcclient.InferInput(sent.inputs[0].name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with grpcclient.InferenceServerClient(target) as client:
        answer = client.infer(sent.model_name, [tensor], client_timeout=60)
    name = answer.get_response().outputs[0].name
    return np.asarray(answer.as_numpy(name), dtype=np.float64).ravel()[:10].tolist()


def ghz(target: str, body: Path, conns: int, seconds: int) -> dict[str, float]:
    """ModelInfer with ``body`` (a serialized request) from ``conns`` concurrent callers on one
    connection (one channel, as a client library opens), for ``seconds``; wrk's summary keys."""
    argv = [GHZ, "--insecure", "--protoset", str(body.parent / "grpc_service.protoset"),
            "--call", "inference.GRPCInferenceService.ModelInfer", "--binary-file", str(body),
            "--concurrency", str(conns), "--connections", "1", "--duration", f"{seconds}s", "--timeout", "10s",
            "--format", "json", target]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if not out.stdout.strip():
        raise RuntimeError(f"ghz printed no report: {out.stderr.strip()[-2000:]}")
    report = json.loads(out.stdout)
    codes = report.get("statusCodeDistribution") or {}
    latency = {d["percentage"]: d["latency"] for d in report.get("latencyDistribution") or []}
    ok = int(codes.get("OK", 0))
    # the calls still in flight when the duration ends fail as ghz closes its connection ("transport is
    # closing") or cancels them: not the server's errors
    failed = sum(n for message, n in (report.get("errorDistribution") or {}).items()
                 if "transport is closing" not in message and "Canceled" not in message)
    return {"requests": ok, "duration_us": report["total"] / 1000, "non2xx": failed,
            "connect": 0, "read": 0, "write": 0, "timeout": 0,
            "p50_us": latency.get(50, 0) / 1000, "p99_us": latency.get(99, 0) / 1000}


def measure(case: str, server: Server, path: str, body: Path | None, key: str, conns: int,
            seconds: int, results: list[Result], reference: dict[str, list[float]], warm_up: bool) -> None:
    if path == "grpc":
        assert body is not None and server.grpc_port
        target = f"127.0.0.1:{server.grpc_port}"
        first = check_grpc(target, body)

        def drive(secs: int) -> dict[str, float]:
            return ghz(target, body, conns, secs)
    else:
        url = f"http://127.0.0.1:{server.port}{path}"
        first = check(url, body, key)

        def drive(secs: int) -> dict[str, float]:
            return wrk(url, body, conns, secs)
    # the same case answers alike on every server and transport (the gRPC and HTTP rows share a reference)
    same = {"grpc_mlp_b1_c64": "mlp_b1_c64", "grpc_img32": "img32_v2_flat"}.get(case, case)
    if first and same in reference and not np.allclose(first, reference[same], rtol=1e-3, atol=1e-5):
        log(f"warning: {server.label} answers {first[:3]} for {case}, others {reference[same][:3]}")
    reference.setdefault(same, first)
    if warm_up:
        drive(2)  # not recorded
    load = loadavg()
    assert server.proc is not None
    cpu_before = cpu_seconds(server.proc.pid)
    s = drive(seconds)
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    errors = int(s["non2xx"] + s["connect"] + s["read"] + s["write"] + s["timeout"])
    r = Result(case, server.label, server.processes, conns, s["requests"] / (s["duration_us"] / 1e6), s["p50_us"] / 1000,
               s["p99_us"] / 1000, errors, load, cpu_ms=1000 * cpu / max(1, s["requests"]))
    results.append(r)
    log(f"{case:14} {server.label:28} c={conns:<3} {r.rps:8.1f} req/s  p50 {r.p50_ms:7.2f} ms  "
        f"p99 {r.p99_ms:7.2f} ms  CPU {r.cpu_ms:6.3f} ms/req  errors {errors}  load {load}")


# -- report ---------------------------------------------------------------------------------------
def pick(results: list[Result], case: str, server: str, processes: int = 1) -> Result | None:
    """The result of a case on the server whose label starts with ``server``, run as ``processes``."""
    return next((r for r in results if r.case == case and r.server.startswith(server)
                 and r.processes == processes), None)


def versions() -> str:
    """Versions of what was compared, from each environment."""
    found = []
    for label, py, packages in (
        ("modelserver", REPO / ".venv" / "bin" / "python", ("tornado", "tensorflow-cpu")),
        ("kserve", CACHE / "venvs" / "kserve" / "bin" / "python", ("kserve", "tensorflow-cpu")),
        ("mlserver", CACHE / "venvs" / "mlserver" / "bin" / "python", ("mlserver", "tensorflow-cpu")),
    ):
        if not py.exists():
            continue
        code = "import importlib.metadata as m, sys; print(' '.join(p + ' ' + m.version(p) for p in sys.argv[1:]))"
        out = subprocess.run([str(py), "-c", code, *packages], capture_output=True, text=True, cwd=CACHE)
        found.append(f"{label}: {out.stdout.strip() or 'unknown'}")
    return "; ".join(found)


def report(results: list[Result], rss: dict[str, float], command: str, started: str, ended: str, seconds: int,
           rounds: int, starts: dict[str, float] | None = None) -> str:
    lines = [
        f"Command: `{command}`  ",
        f"Run {started} to {ended} UTC on {os.cpu_count()} cores (wrk runs on the same machine); the load "
        f"average (1/5/15 min) when each case began is in the last column, at the end it was {loadavg()}.  ",
        f"Versions: {versions()}.  ",
        "modelserver runs with `--log-level warning` (no access log), KServe with "
        "`--enable_latency_logging False --configure_logging False`; MLServer with `parallel_workers: 0`, "
        "with and without adaptive batching (max_batch_size 32, max_batch_time 2 ms). "
        f"Each case: a 2 s warm-up, then {rounds} rounds of {seconds} s on every server in turn; each row is "
        "the server's median round (its req/s, p50 and p99), with the range of its rounds' req/s beside it, "
        "and the errors of all its rounds. CPU ms/req: the server's user + system CPU time (every thread and "
        "process) over the median round, per request answered.",
        "",
        "| case | server | processes | conns | req/s | rounds' req/s | p50 ms | p99 ms | CPU ms/req | errors | load avg |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        lines.append(f"| {r.case} | {r.server} | {r.processes} | {r.conns} | {r.rps:.0f} | {r.low:.0f}-{r.high:.0f} | "
                     f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.cpu_ms:.3f} | {r.errors} | {r.load} |")
    lines += ["", "| target | measured | met |", "| --- | --- | --- |"]

    def target(text: str, value: float | None, goal: float, higher: bool = True, fmt: str = "{:.2f}x") -> None:
        if value is None:
            lines.append(f"| {text} | not measured | no |")
            return
        met = value >= goal if higher else value <= goal
        lines.append(f"| {text} | {fmt.format(value)} | {'yes' if met else 'NO'} |")

    ours64, k64 = pick(results, "mlp_b1_c64", "modelserver"), pick(results, "mlp_b1_c64", "kserve")
    mb64 = pick(results, "mlp_b1_c64", "mlserver-batching")
    hello_r = next((r for r in results if r.case == "hello" and r.server == "tornado-hello"), None)

    def ratio(a: Result | None, b: Result | None) -> float | None:
        return a.rps / b.rps if a and b else None

    target("V1 MLP c=64: req/s vs KServe (>= 4x)", ratio(ours64, k64), 4)
    if ours64 and k64 and ours64.cpu_ms:
        lines.append(f"| (for reference) V1 MLP c=64: KServe's CPU time per request / modelserver's | "
                     f"{k64.cpu_ms / ours64.cpu_ms:.2f}x | - |")
    target("V1 MLP c=64: req/s vs MLServer with batching (>= 3x)", ratio(ours64, mb64), 3)
    target("V1 MLP c=64: p99 vs KServe's (<= 1x)", ours64.p99_ms / k64.p99_ms if ours64 and k64 else None, 1, higher=False)
    ours1, k1 = pick(results, "mlp_b1_c1", "modelserver"), pick(results, "mlp_b1_c1", "kserve")
    target("V1 MLP c=1: p50 vs KServe's (<= 1x)", ours1.p50_ms / k1.p50_ms if ours1 and k1 else None, 1, higher=False)
    target("V1 MLP c=64: req/s vs tornado hello-world (>= 75%)", ratio(ours64, hello_r), 0.75, fmt="{:.0%}")
    hello_uv = pick(results, "hello", "tornado-hello-uvloop")
    if hello_uv:
        lines.append(f"| (for reference) V1 MLP c=64 vs tornado hello-world on uvloop, as modelserver runs | "
                     f"{ratio(ours64, hello_uv):.0%} | - |" if ours64 else "")
    target("V1 32 images, nested lists: req/s vs KServe (>= 5x)",
           ratio(pick(results, "img32_v1_nested", "modelserver"), pick(results, "img32_v1_nested", "kserve")), 5)
    mls_flat = [r for r in results if r.case == "img32_v2_flat" and r.server.startswith("mlserver")]
    best = max(mls_flat, key=lambda r: r.rps) if mls_flat else None
    target(f"V2 flat 32 images: req/s vs MLServer's best ({best.server if best else '-'}) (>= 1.5x)",
           ratio(pick(results, "img32_v2_flat", "modelserver"), best), 1.5)
    ours2, k2 = pick(results, "mlp_b1_c64", "modelserver", 2), pick(results, "mlp_b1_c64", "kserve", 2)
    hello2 = next((r for r in results if r.case == "hello" and r.server == "tornado-hello-x2"), None)
    flat2 = pick(results, "img32_v2_flat", "modelserver", 2)
    nested2, k_nested = pick(results, "img32_v1_nested", "modelserver", 2), pick(results, "img32_v1_nested", "kserve")
    for text, a, b in (("modelserver --workers 2 vs KServe --workers 2", ours2, k2),
                       ("modelserver --workers 2 vs MLServer with batching", ours2, mb64),
                       ("modelserver --workers 2 vs tornado hello-world in 2 processes", ours2, hello2)):
        value = ratio(a, b)
        if value is not None:
            lines.append(f"| (for reference) V1 MLP c=64: {text} | {value:.2f}x | - |")
    for text, a, b in (("V1 32 images, nested lists: modelserver --workers 2 vs KServe", nested2, k_nested),
                       ("V2 flat 32 images: modelserver --workers 2 vs MLServer's best", flat2, best)):
        value = ratio(a, b)
        if value is not None:
            lines.append(f"| (for reference) {text} | {value:.2f}x | - |")
    # gRPC: no targets are set; the ratios against the peers' gRPC servers and this server's own HTTP
    mls_grpc = {case: max((r for r in results if r.case == case and r.server.startswith("mlserver")),
                          key=lambda r: r.rps, default=None) for case in ("grpc_mlp_b1_c64", "grpc_img32")}
    for text, a, b in (
        ("gRPC MLP c=64: modelserver vs KServe", pick(results, "grpc_mlp_b1_c64", "modelserver"),
         pick(results, "grpc_mlp_b1_c64", "kserve")),
        ("gRPC MLP c=64: modelserver vs MLServer's best", pick(results, "grpc_mlp_b1_c64", "modelserver"),
         mls_grpc["grpc_mlp_b1_c64"]),
        ("MLP c=64: modelserver over gRPC vs over HTTP (V1)", pick(results, "grpc_mlp_b1_c64", "modelserver"), ours64),
        ("gRPC 32 images: modelserver vs KServe", pick(results, "grpc_img32", "modelserver"),
         pick(results, "grpc_img32", "kserve")),
        ("gRPC 32 images: modelserver vs MLServer's best", pick(results, "grpc_img32", "modelserver"),
         mls_grpc["grpc_img32"]),
        ("32 images: modelserver over gRPC vs over HTTP (V2 flat)", pick(results, "grpc_img32", "modelserver"),
         pick(results, "img32_v2_flat", "modelserver")),
    ):
        value = ratio(a, b)
        if value is not None:
            lines.append(f"| (for reference) {text} | {value:.2f}x | - |")
    lines += ["", "| server (MLP model) | RSS after its runs, MB (all processes) |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.0f} |" for k, v in rss.items()]
    if starts:
        lines += ["", "| server | seconds from process start to its first ready answer (started alone) |",
                  "| --- | ---: |"]
        lines += [f"| {k} | {v:.2f} |" for k, v in starts.items()]
    return "\n".join(lines) + "\n"


WRK = "wrk"
GHZ = "ghz"


def main() -> int:
    global WRK, GHZ
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=6, help="measured seconds per case and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every case on every server; rows are medians")
    p.add_argument("--only", default="", help="comma-separated servers to run (modelserver,kserve,mlserver,hello)")
    p.add_argument("--cases", default="", help="comma-separated cases to run (hello, mlp_b1_c64, mlp_b1_c1, "
                   "img32_v1_nested, img32_v2_flat, grpc_mlp_b1_c64, grpc_img32); all when empty")
    p.add_argument("--out", default=str(HERE / "results" / "latest.md"), help="where to write the table")
    p.add_argument("--baseline", default="", help="another checkout (git worktree add DIR REV) whose modelserver "
                   "runs every modelserver case too, as the server 'baseline'")
    args = p.parse_args()
    seconds = max(1, min(args.seconds, 60))  # every load run is bounded
    rounds = max(1, min(args.rounds, 9))
    only = set(filter(None, args.only.split(",")))
    order = ["hello", "mlp_b1_c64", "mlp_b1_c1", "img32_v1_nested", "img32_v2_flat", "grpc_mlp_b1_c64", "grpc_img32"]
    chosen = set(filter(None, args.cases.split(",")))
    if chosen - set(order):
        p.error(f"--cases: unknown {sorted(chosen - set(order))}; the cases are {order}")
    order = [c for c in order if not chosen or c in chosen]

    def want(name: str) -> bool:
        return not only or name in only

    given = " ".join(sys.argv[1:])
    if os.environ.get("BENCH_VIA_MAKE"):
        command = f'make bench BENCH_ARGS="{given}"' if given else "make bench"
    else:
        command = "python bench/run.py " + given
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())

    WRK = ensure_wrk()
    if {"grpc_mlp_b1_c64", "grpc_img32"} & set(order) and (not only or only & {"modelserver", "kserve", "mlserver"}):
        GHZ = ensure_ghz()
    work = CACHE / "work"
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    log("building models")
    subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(HERE / "models.py"), str(CACHE / "models")],
                   check=True, stdout=subprocess.DEVNULL)
    mlp, img = CACHE / "models" / "mlp" / "1", CACHE / "models" / "mnist" / "1"
    b = bodies(work / "bodies")

    results: list[Result] = []
    rss: dict[str, float] = {}
    reference: dict[str, list[float]] = {}

    # Every server is started first and stays up (idle servers take no CPU); then each case runs
    # on every server in turn, back to back, so the servers compared in a case see the same load.
    Case = tuple[str, str, str | None, str, int]  # name, path, body, answer key, connections
    plan: list[tuple[str, Server, list[Case], bool]] = []  # group, server, cases, record RSS
    if want("hello"):
        plan.append(("hello", hello(), [("hello", "/", None, "", 64)], False))
        plan.append(("hello", hello(uvloop=True), [("hello", "/", None, "", 64)], False))
        plan.append(("hello", hello(processes=2), [("hello", "/", None, "", 64)], False))
    mlp_v1: list[Case] = [("mlp_b1_c64", "/v1/models/mlp:predict", "v1_mlp", "predictions", 64),
              ("mlp_b1_c1", "/v1/models/mlp:predict", "v1_mlp", "predictions", 1)]
    img_cases: list[Case] = [
        ("img32_v1_nested", "/v1/models/mnist:predict", "v1_img32", "predictions", 4),
        ("img32_v2_flat", "/v2/models/mnist/infer", "v2_img32", "outputs", 4)]
    # gRPC: ModelInfer with raw contents, the MLP at batch 1 and the 32 images, on every server that serves it
    grpc_mlp: list[Case] = [("grpc_mlp_b1_c64", "grpc", "grpc_mlp", "", 64)]
    grpc_img: list[Case] = [("grpc_img32", "grpc", "grpc_img32", "", 4)]
    if want("modelserver"):
        plan.append(("modelserver", modelserver("mlp", mlp), mlp_v1, True))
        plan.append(("modelserver", modelserver("mlp", mlp, workers=2), mlp_v1[:1], True))
        plan.append(("modelserver", modelserver("mnist", img), img_cases, False))
        plan.append(("modelserver", modelserver("mnist", img, workers=2), img_cases, False))
        plan.append(("modelserver", modelserver("mlp", mlp, grpc=True), grpc_mlp, True))
        plan.append(("modelserver", modelserver("mnist", img, grpc=True), grpc_img, False))
    if args.baseline:
        base = Path(args.baseline).resolve()
        if not (base / "modelserver" / "__init__.py").is_file():
            p.error(f"--baseline {base}: not a checkout of this project (no modelserver/ there)")
        plan.append(("baseline", modelserver("mlp", mlp, checkout=base), mlp_v1, True))
        plan.append(("baseline", modelserver("mlp", mlp, workers=2, checkout=base), mlp_v1[:1], True))
        plan.append(("baseline", modelserver("mnist", img, checkout=base), img_cases, False))
        plan.append(("baseline", modelserver("mnist", img, workers=2, checkout=base), img_cases, False))
    if want("kserve"):
        plan.append(("kserve", kserve("mlp", mlp), [*mlp_v1, *grpc_mlp], True))
        plan.append(("kserve", kserve("mlp", mlp, workers=2), mlp_v1[:1], True))
        plan.append(("kserve", kserve("mnist", img),
                     [("img32_v1_nested", "/v1/models/mnist:predict", "v1_img32", "predictions", 4), *grpc_img], False))
    if want("mlserver"):
        for batching in (True, False):
            plan.append(("mlserver", mlserver("mlp", mlp, work, batching=batching),
                         [("mlp_b1_c64", "/v2/models/mlp/infer", "v2_mlp", "outputs", 64), *grpc_mlp], True))
            plan.append(("mlserver", mlserver("mnist", img, work, batching=batching),
                         [("img32_v2_flat", "/v2/models/mnist/infer", "v2_img32", "outputs", 4), *grpc_img], False))

    # only the servers with a chosen case are started
    plan = [(group, server, [c for c in cases if c[0] in order], record) for group, server, cases, record in plan]
    plan = [entry for entry in plan if entry[2]]
    running: list[tuple[Server, list[Case], bool]] = []
    try:
        for _, server, cases, record in plan:
            log(f"starting {server.label}")
            try:
                server.start(logs)
                running.append((server, cases, record))
            except Exception as e:  # report what ran; say plainly what did not
                log(f"{server.label}: FAILED to start: {e}")
                server.stop()
        # rounds over the whole plan, so a spell of load on the machine touches every server alike
        runs: list[Result] = []
        for round_ in range(rounds):
            log(f"round {round_ + 1} of {rounds}")
            for name in order:
                for server, cases, _ in running:
                    for case, path, body, key, conns in cases:
                        if case != name:
                            continue
                        try:
                            measure(case, server, path, b[body] if body else None, key, conns, seconds, runs,
                                    reference, warm_up=round_ == 0)
                        except Exception as e:
                            log(f"{case} on {server.label}: FAILED: {e}")
        results = medians(runs)
        for server, _, record in running:
            if record and server.proc is not None:
                rss[server.label] = rss_mb(server.proc.pid)
    finally:
        for server, _, _ in running:
            server.stop()

    ended = time.strftime("%H:%M", time.gmtime())
    starts = {server.label: server.ready_seconds for server, _, _ in running}
    text = report(results, rss, command, started, ended, seconds, rounds, starts)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("# Benchmark results\n\n" + text)
        log(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
