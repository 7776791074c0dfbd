"""Fetching a model from S3 or an S3-compatible store (``s3://bucket/prefix``), with boto3.

- Credentials come from the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
  shared config and credentials files, ``AWS_PROFILE``, web-identity tokens for IRSA and workload
  identity); ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) points at an S3-compatible store,
  and ``AWS_REGION`` names the region.
- ``s3://bucket/path/model.keras`` (an object) is that one file; ``s3://bucket/models/iris``
  (a prefix) is every object below ``models/iris/``, laid out as they are named.
- Objects are downloaded by boto3's transfer manager: large ones in parallel ranged requests.
  Every file is written to a temporary name, its size checked against the object's, and only then
  renamed into place; the whole tree goes into DIR only once every object has arrived, so a
  partial download is never taken for a model.
- Errors name the bucket, the key and the store's error code (``NoSuchBucket``, ``AccessDenied``,
  ``InvalidAccessKeyId``, ...).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: objects above this size are fetched in parallel ranged requests of this size
PART_BYTES = 16 * 1024 * 1024
PARALLEL = 8


class S3Error(Exception):
    """An S3 fetch failed; the message names the bucket, the key and the store's error code."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse(uri: str) -> S3Location:
    """``s3://bucket/key-or-prefix``; S3Error for anything else."""
    if not uri.startswith("s3://"):
        raise S3Error(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise S3Error(f"{uri!r}: expected s3://BUCKET/PREFIX")
    return S3Location(bucket, key.strip("/"))


def _client() -> Any:
    import boto3
    from botocore.config import Config

    # endpoint, region and credentials: the standard AWS environment and files
    return boto3.session.Session().client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def _explain(e: Exception, bucket: str, key: str) -> S3Error:
    """A boto3 failure as a message naming the bucket, the key and the store's error code."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code") or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "error"))
        if code in ("404", "NotFound"):
            code = "NoSuchKey"
        if code == "403":
            code = "AccessDenied"
        message = err.get("Message") or ""
        return S3Error(f"{where}: {code}" + (f": {message}" if message and message != code else ""), code)
    if isinstance(e, NoCredentialsError):
        return S3Error(f"{where}: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile, "
                       "or a web-identity token)")
    if isinstance(e, BotoCoreError):
        return S3Error(f"{where}: {e}")
    return S3Error(f"{where}: {type(e).__name__}: {e}")


def _objects(client: Any, loc: S3Location) -> list[tuple[str, int]]:
    """(key, size) of the object ``loc.key`` names, or of every object below it as a prefix."""
    head_error: S3Error | None = None
    if loc.key:
        try:
            head = client.head_object(Bucket=loc.bucket, Key=loc.key)
            return [(loc.key, int(head["ContentLength"]))]
        except Exception as e:
            # a HEAD answer has no body to say why; a missing object may be a prefix: list to see
            head_error = _explain(e, loc.bucket, loc.key)
            if head_error.code not in ("NoSuchKey", "AccessDenied"):
                raise head_error from e
    prefix = f"{loc.key}/" if loc.key else ""
    found: list[tuple[str, int]] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
            found += [(o["Key"], int(o["Size"])) for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    except Exception as e:
        raise _explain(e, loc.bucket, prefix) from e
    if not found:
        if head_error is not None and head_error.code == "AccessDenied":
            raise head_error
        raise S3Error(f"{loc.uri}: NoSuchKey: no object is named {loc.key or '(empty)'!r} and none is below it")
    return found


def list_models(uri: str, file_suffixes: tuple[str, ...]) -> dict[str, str]:
    """A model repository under an S3 prefix: ``{name: uri}`` for each "directory" just below it
    and each file in it with one of ``file_suffixes`` (as ``runtime.repository.list_repository``
    reads a local one)."""
    loc = parse(uri)
    prefix = f"{loc.key}/" if loc.key else ""
    found: dict[str, str] = {}
    try:
        pages = _client().get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix, Delimiter="/")
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix):].rstrip("/")
                if name and not name.startswith("."):
                    found[name] = f"s3://{loc.bucket}/{prefix}{name}"
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                stem, dot, suffix = name.rpartition(".")
                if dot and f".{suffix}" in file_suffixes and stem and not stem.startswith("."):
                    found.setdefault(stem, f"s3://{loc.bucket}/{obj['Key']}")
    except Exception as e:
        raise _explain(e, loc.bucket, prefix) from e
    return dict(sorted(found.items()))


class _Progress:
    """A progress line at most once a second, for the whole fetch (boto3 calls it from its threads)."""

    def __init__(self, total: int, out: IO[str]) -> None:
        self.total, self.out = total, out
        self.done = 0
        self.started = self.shown = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self.lock:
            self.done += n
            if time.monotonic() - self.shown >= 1.0:
                self.show()

    def show(self, final: bool = False) -> None:
        mb = self.done / 1e6
        rate = mb / max(time.monotonic() - self.started, 1e-6)
        pct = 100 * self.done / self.total if self.total else 100.0
        self.out.write(f"\rfetch: {mb:8.1f} MB {pct:5.1f}% of {self.total / 1e6:.1f} MB ({rate:.1f} MB/s)"
                       + ("\n" if final else ""))
        self.out.flush()
        self.shown = time.monotonic()


def _relative(key: str, loc: S3Location, single: bool) -> Path:
    rel = Path(Path(key).name) if single else Path(key[len(loc.key) :].lstrip("/") if loc.key else key)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise S3Error(f"s3://{loc.bucket}/{key}: a key that would be written outside the model directory")
    return rel


def fetch_s3(uri: str, dest: Path, out: IO[str] = sys.stderr) -> list[Path]:
    """Download the object or prefix ``uri`` names into ``dest``; the files written, relative to it."""
    from boto3.s3.transfer import TransferConfig

    loc = parse(uri)
    client = _client()
    objects = _objects(client, loc)
    single = len(objects) == 1 and objects[0][0] == loc.key
    total = sum(size for _, size in objects)
    out.write(f"fetch: {uri}: {len(objects)} object(s), {total / 1e6:.1f} MB\n")
    progress = _Progress(total, out)
    config = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES,
                            max_concurrency=PARALLEL, use_threads=True)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
        staging = Path(tmp)
        for key, size in objects:
            rel = _relative(key, loc, single)
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                client.download_file(loc.bucket, key, str(target), Config=config, Callback=progress)
            except Exception as e:
                raise _explain(e, loc.bucket, key) from e
            got = target.stat().st_size
            if got != size:
                raise S3Error(f"s3://{loc.bucket}/{key}: got {got} of {size} bytes")
            written.append(rel)
        progress.show(final=True)
        for child in staging.iterdir():  # every object arrived: move the tree into place
            final = dest / child.name
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            elif final.exists():
                final.unlink()
            child.rename(final)
    return written
