"""``modelserver fetch`` against a real HTTP server on 127.0.0.1 and local paths."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from modelserver.fetch import FetchError, fetch


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _model_tree(root: Path) -> None:
    (root / "iris" / "1").mkdir(parents=True)
    (root / "iris" / "1" / "saved_model.pb").write_bytes(b"pb")
    (root / "iris" / "1" / "variables").mkdir()


def test_http_tar_gz_is_unpacked_without_its_top_directory(http_dir, tmp_path):
    www, base = http_dir
    src = tmp_path / "src"
    _model_tree(src)
    with tarfile.open(www / "iris.tar.gz", "w:gz") as t:
        t.add(src / "iris", arcname="iris")
    out = io.StringIO()
    dest = fetch(f"{base}/iris.tar.gz", tmp_path / "dest", out)
    assert (dest / "1" / "saved_model.pb").read_bytes() == b"pb"
    assert "100.0%" in out.getvalue()


def test_http_zip_and_plain_file(http_dir, tmp_path):
    www, base = http_dir
    with zipfile.ZipFile(www / "m.zip", "w") as z:
        z.writestr("1/saved_model.pb", b"pb")
    assert (fetch(f"{base}/m.zip", tmp_path / "z", io.StringIO()) / "1" / "saved_model.pb").exists()
    (www / "weights.bin").write_bytes(b"x" * 3000)
    assert (fetch(f"{base}/weights.bin", tmp_path / "f", io.StringIO()) / "weights.bin").stat().st_size == 3000


def test_local_directory_and_file_uri(tmp_path):
    src = tmp_path / "src"
    _model_tree(src)
    assert (fetch(str(src / "iris"), tmp_path / "a") / "1" / "saved_model.pb").exists()
    assert (fetch((src / "iris").as_uri(), tmp_path / "b") / "1" / "saved_model.pb").exists()


def test_errors(http_dir, tmp_path):
    www, base = http_dir
    with pytest.raises(FetchError, match="404"):
        fetch(f"{base}/missing.tar.gz", tmp_path / "x", io.StringIO())
    with pytest.raises(FetchError, match="unsupported URI scheme 'gs'"):
        fetch("gs://bucket/model", tmp_path / "y")
    evil = www / "evil.tar"
    with tarfile.open(evil, "w") as t:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(FetchError, match="outside"):
        fetch(f"{base}/evil.tar", tmp_path / "z", io.StringIO())
    assert not (tmp_path / "escape.txt").exists()
    (www / "bad.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(FetchError, match="not a readable archive"):
        fetch(f"{base}/bad.tar.gz", tmp_path / "w", io.StringIO())
