"""Server-tier fixtures: the real ``modelserver serve`` process on 127.0.0.1, with test-made models."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import hf_models, models

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``modelserver serve`` process; ``url('/v2')`` builds addresses on it."""

    def __init__(self, model: Path | None, *args: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        #: each server its own gRPC port (the default, 8081, would be shared by every test server)
        self.grpc_port = free_port()
        self.log_path = log
        cmd = [sys.executable, "-m", "modelserver", "serve"]
        if model is not None:
            cmd.append(str(model))
        if "--grpc-port" not in args:
            args = ("--grpc-port", str(self.grpc_port), *args)
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), *args]
        self._log = open(log, "wb")
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env=full_env)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0, path: str = "/v2/health/ready") -> Server:
        """Wait until ``path`` answers 200 (readiness by default, liveness for a listening server)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"modelserver exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url(path), timeout=1).status_code == 200:
                    return self
            except requests.RequestException:  # not listening yet, or slow under load
                pass
            time.sleep(0.1)
        raise TimeoutError(f"modelserver not ready after {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def iris_path(model_dir: Path) -> Path:
    from modelserver import demo

    return demo.build(model_dir / "iris")


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    started: list[Server] = []
    logs = tmp_path_factory.mktemp("logs")

    def start(model: Path | None, *args: str, env: dict[str, str] | None = None, ready: bool = True) -> Server:
        server = Server(model, *args, log=logs / f"server-{len(started)}.log", env=env)
        started.append(server)
        return server.wait_ready() if ready else server.wait_ready(path="/v2/health/live")

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def iris(start_server, iris_path: Path) -> Server:
    return start_server(iris_path)


@pytest.fixture(scope="session")
def multi(start_server, model_dir: Path) -> tuple[Server, Path]:
    path = models.multi_dtype(model_dir / "multi")
    return start_server(path), path


@pytest.fixture(scope="session")
def versioned(start_server, model_dir: Path) -> Server:
    return start_server(models.versioned(model_dir / "scaled"), "--version-labels", "stable=1,canary=2")


@pytest.fixture(scope="session")
def llm(start_server, model_dir: Path) -> tuple[Server, Path]:
    """The tiny Llama made by the tests, served over the OpenAI protocol as ``my-llm``."""
    path = hf_models.make_tiny_llama(model_dir / "tiny-llama")
    return start_server(path, "--name", "my-llm", "--protocol", "openai", "--max-sequences", "4"), path


@pytest.fixture(scope="session")
def minilm(start_server) -> Server:
    """The real all-MiniLM-L6-v2 (shipped in a PyPI package), served over the OpenAI protocol as ``minilm``."""
    return start_server(hf_models.minilm_dir(), "--name", "minilm", "--protocol", "openai")
