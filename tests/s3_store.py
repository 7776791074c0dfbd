"""A real S3-compatible store for the tests: SeaweedFS's ``weed mini`` on 127.0.0.1.

The ``weed`` binary is built from SeaweedFS's Go module by ``cluster/build-seaweedfs.sh`` (cached,
so only the first run pays for it). Each store gets its own data directory and free ports, and its
admin credentials; the standard ``AWS_*`` variables in ``env`` are all a client needs.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCESS_KEY = "modeldeploy-test"
SECRET_KEY = "modeldeploy-test-secret"
REGION = "us-east-1"
#: an identity that may list but not read: what a misconfigured role looks like
LISTER_KEY = "modeldeploy-lister"
LISTER_SECRET = "modeldeploy-lister-secret"


def _identities() -> dict:
    return {"identities": [
        {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
         "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
        {"name": "lister", "credentials": [{"accessKey": LISTER_KEY, "secretKey": LISTER_SECRET}], "actions": ["List"]},
    ]}


def weed_binary() -> Path:
    """The cached ``weed``, built first if it is not there yet."""
    done = subprocess.run([str(ROOT / "cluster" / "build-seaweedfs.sh")], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"cannot build SeaweedFS:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class SeaweedFS:
    """``weed mini`` with only its master, volume, filer and S3 gateway, on loopback."""

    def __init__(self, weed: Path, data: Path) -> None:
        data.mkdir(parents=True, exist_ok=True)
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.log_path = data / "weed.log"
        config = data / "s3.json"
        config.write_text(json.dumps(_identities()))
        args = [
            str(weed), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}", f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false", f"-s3.config={config}",
        ]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(data), "AWS_ACCESS_KEY_ID": ACCESS_KEY,
               "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=data)
        self._wait()

    @property
    def env(self) -> dict[str, str]:
        """What a client needs, in the standard AWS variables."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": REGION}

    def client(self, access: str = ACCESS_KEY, secret: str = SECRET_KEY):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=access, aws_secret_access_key=secret)

    def _wait(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited ({self.proc.returncode}):\n{self.log_path.read_text()[-3000:]}")
            try:
                c = self.client()
                c.create_bucket(Bucket="probe")
                c.put_object(Bucket="probe", Key="ready", Body=b"1")
                return
            except Exception as e:  # not up yet
                last = e
                time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS not ready after {timeout}s: {last}\n{self.log_path.read_text()[-3000:]}")

    def upload_tree(self, bucket: str, prefix: str, root: Path) -> list[str]:
        """Every file under ``root`` as ``prefix/relative/path``; the keys written."""
        c = self.client()
        keys = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(root).as_posix()}".lstrip("/")
            c.upload_file(str(path), bucket, key)
            keys.append(key)
        return keys

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
