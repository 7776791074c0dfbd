"""``modelserver fetch URI DIR``: put a model where the server can load it (the init container's job).

- ``http(s)://.../model.tar.gz|.tgz|.tar|.zip``: downloaded with progress, unpacked into DIR;
- ``http(s)://...`` anything else: saved into DIR under its file name;
- ``s3://bucket/prefix`` or ``s3://bucket/key``: every object below the prefix, or the one object
  (an archive is unpacked), from S3 or an S3-compatible store (see ``s3``);
- ``file:///path`` or a plain path: a directory copied into DIR, an archive unpacked there, or any
  other file (a ``.keras`` model, say) copied into DIR under its name.

An archive holding a single top-level directory is unpacked without it, so ``iris.tar.gz`` with
``iris/1/saved_model.pb`` inside serves from DIR directly. Members that would land outside DIR
are refused.
"""

from __future__ import annotations

import shutil
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import IO

ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")
CHUNK = 1 << 20


class FetchError(Exception):
    """The model could not be fetched; the message says why."""


def _progress(out: IO[str], done: int, total: int | None, started: float, final: bool = False) -> None:
    mb = done / 1e6
    rate = mb / max(time.monotonic() - started, 1e-6)
    pct = f" {100 * done / total:5.1f}% of {total / 1e6:.1f} MB" if total else ""
    out.write(f"\rfetch: {mb:8.1f} MB{pct} ({rate:.1f} MB/s)" + ("\n" if final else ""))
    out.flush()


def download(url: str, dest: Path, out: IO[str] = sys.stderr, timeout: float = 60.0) -> Path:
    """Stream ``url`` into ``dest`` with a progress line at most once a second."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as f:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done, started, shown = 0, time.monotonic(), 0.0
            while chunk := resp.read(CHUNK):
                f.write(chunk)
                done += len(chunk)
                if time.monotonic() - shown >= 1.0:
                    _progress(out, done, total, started)
                    shown = time.monotonic()
            _progress(out, done, total, started, final=True)
            if total is not None and done != total:
                raise FetchError(f"{url}: got {done} of {total} bytes")
    except OSError as e:  # URLError, HTTPError, timeouts
        raise FetchError(f"cannot download {url}: {e}") from e
    return dest


def _safe_target(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if root.resolve() not in target.parents and target != root.resolve():
        raise FetchError(f"archive member {name!r} would be written outside {root}")
    return target


def unpack(archive: Path, dest: Path) -> None:
    """Unpack a tar or zip archive into ``dest``, refusing members that escape it."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                _safe_target(dest, name)
            z.extractall(dest)
        return
    try:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                _safe_target(dest, m.name)
                if m.issym() or m.islnk():
                    raise FetchError(f"archive member {m.name!r} is a link; links are not accepted")
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+; the checks above hold either way
                t.extractall(dest, filter="data")
            else:
                t.extractall(dest)
    except tarfile.TarError as e:
        raise FetchError(f"{archive.name} is not a readable archive: {e}") from e


def _flatten(dest: Path) -> None:
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not (dest / "saved_model.pb").exists():
        inner = entries[0]
        if inner.name.isdigit():
            return  # a lone version directory is already the layout we want
        for child in inner.iterdir():
            shutil.move(str(child), dest / child.name)
        inner.rmdir()


def fetch(uri: str, dest: Path, out: IO[str] = sys.stderr) -> Path:
    """Fetch ``uri`` into ``dest`` (created if needed); returns ``dest``."""
    parsed = urllib.parse.urlparse(uri)
    dest.mkdir(parents=True, exist_ok=True)
    if parsed.scheme in ("http", "https"):
        name = Path(parsed.path).name or "model"
        if not name.endswith(ARCHIVES):
            return download(uri, dest / name, out).parent
        with tempfile.TemporaryDirectory() as tmp:
            archive = download(uri, Path(tmp) / name, out)
            unpack(archive, dest)
        _flatten(dest)
        return dest
    if parsed.scheme == "s3":
        from modelserver.s3 import S3Error, fetch_s3

        try:
            written = fetch_s3(uri, dest, out)
        except S3Error as e:
            raise FetchError(str(e)) from e
        if len(written) == 1 and written[0].name.endswith(ARCHIVES):
            archive = dest / written[0]
            with tempfile.TemporaryDirectory() as tmp:
                moved = Path(tmp) / archive.name
                shutil.move(str(archive), moved)
                unpack(moved, dest)
            _flatten(dest)
        return dest
    if parsed.scheme in ("file", ""):
        src = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri)
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        elif src.is_file() and src.name.endswith(ARCHIVES):
            unpack(src, dest)
            _flatten(dest)
        elif src.is_file():
            shutil.copy2(src, dest / src.name)
        else:
            raise FetchError(f"{src} does not exist")
        return dest
    raise FetchError(
        f"unsupported URI scheme {parsed.scheme!r} in {uri!r}: use http(s)://, s3:// or file:// "
        "(pvc:// claims are mounted by the operator, not fetched)"
    )


REMOTE = ("http://", "https://", "s3://")


def fetch_to_cache(uri: str, out: IO[str] = sys.stderr) -> Path:
    """A remote model (``modelserver serve s3://...``) fetched afresh into a cache directory of its own."""
    import hashlib
    import os

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelserver" / "fetched"
    dest = base / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if dest.exists():
        shutil.rmtree(dest)
    return fetch(uri, dest, out)
