"""Models in S3: fetched from a real S3-compatible store (SeaweedFS, started here) with only the
standard AWS variables, served, and every failure named by bucket, key and the store's code."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from modelserver.fetch import FetchError, fetch
from tests import keras_models, s3_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = s3_store.SeaweedFS(s3_store.weed_binary(), tmp_path_factory.mktemp("seaweedfs"))
    s.client().create_bucket(Bucket="models")
    yield s
    s.stop()


@pytest.fixture
def aws_env(store, monkeypatch):
    """The store's standard AWS variables in this process (for ``fetch`` called directly)."""
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    for k, v in store.env.items():
        monkeypatch.setenv(k, v)
    return store.env


def _only_aws(env: dict[str, str]) -> dict[str, str]:
    """A clean environment: the standard AWS variables, and what a shell has."""
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
            if k in os.environ}
    return {**keep, **env}


def test_fetch_a_savedmodel_with_the_aws_variables_then_serve_it(store, iris_path, tmp_path, start_server):
    keys = store.upload_tree("models", "teams/ml/iris", iris_path)
    assert any(k.endswith("saved_model.pb") for k in keys)
    dest = tmp_path / "fetched"
    done = subprocess.run([sys.executable, "-m", "modelserver", "fetch", "s3://models/teams/ml/iris", str(dest)],
                          capture_output=True, text=True, timeout=120, env=_only_aws(store.env), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "MB" in done.stderr and "object(s)" in done.stderr  # progress
    for k in keys:
        rel = k.removeprefix("teams/ml/iris/")
        assert (dest / rel).read_bytes() == (iris_path / rel).read_bytes()
    assert not list(dest.glob(".fetch-*"))
    server = start_server(dest, "--name", "iris")
    r = requests.post(server.url("/v1/models/iris:predict"), json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=30)
    assert r.status_code == 200 and len(r.json()["predictions"][0]) == 3


def test_serve_a_keras_file_straight_from_s3(store, tmp_path, start_server):
    path = keras_models.two_inputs(tmp_path / "churn.keras", seed=3)
    store.client().upload_file(str(path), "models", "keras/churn.keras")
    server = start_server(None, "s3://models/keras/churn.keras", env={**store.env, "XDG_CACHE_HOME": str(tmp_path)})
    age, feats = np.array([[40.0]], np.float32), np.array([[0.5, 0.1, 0.9]], np.float32)
    r = requests.post(server.url("/v1/models/churn:predict"),
                      json={"instances": [{"age": age[0].tolist(), "features": feats[0].tolist()}]}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"][0]["proba"], keras_models.predict(path, age, feats)[1][0],
                               atol=1e-5)


def test_a_large_object_comes_in_parallel_ranges_and_whole(store, aws_env, tmp_path, monkeypatch):
    from modelserver import s3

    blob = np.random.default_rng(0).bytes(40 * 1024 * 1024 + 12345)  # over the 16 MB part size: ranged GETs
    store.client().put_object(Bucket="models", Key="big/weights.bin", Body=blob)
    ranges: list[str] = []
    real_client = s3._client

    def observed_client():  # the real client, with an observer on the requests it sends
        client = real_client()
        client.meta.events.register("before-send.s3.GetObject",
                                    lambda request, **_: ranges.append(request.headers.get("Range", b"")))
        return client

    monkeypatch.setattr(s3, "_client", observed_client)
    out = io.StringIO()
    fetch("s3://models/big", tmp_path / "big", out)
    got = (tmp_path / "big" / "weights.bin").read_bytes()
    assert len(got) == len(blob) and hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
    assert len(ranges) == 3 and all(r for r in ranges), ranges  # 16 + 16 + 10 MB
    assert "100.0% of 42.0 MB" in out.getvalue()


def test_an_archive_object_is_unpacked(store, aws_env, iris_path, tmp_path):
    import tarfile

    archive = tmp_path / "iris.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(iris_path, arcname="iris")
    store.client().upload_file(str(archive), "models", "archives/iris.tar.gz")
    dest = fetch("s3://models/archives/iris.tar.gz", tmp_path / "unpacked", io.StringIO())
    assert (dest / "1" / "saved_model.pb").is_file() and not (dest / "iris.tar.gz").exists()


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("s3://no-such-bucket/iris", ["s3://no-such-bucket", "NoSuchBucket"]),
        ("s3://models/teams/nobody/model", ["s3://models/teams/nobody/model", "NoSuchKey"]),
    ],
)
def test_what_is_missing_is_named(store, aws_env, tmp_path, uri, words):
    dest = tmp_path / "dest"
    with pytest.raises(FetchError) as e:
        fetch(uri, dest, io.StringIO())
    for w in words:
        assert w in str(e.value)
    assert not dest.exists() or not any(dest.iterdir())  # nothing partial left behind


def test_wrong_credentials_are_named_and_the_command_fails(store, tmp_path):
    env = {**store.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    done = subprocess.run([sys.executable, "-m", "modelserver", "fetch", "s3://models/teams/ml/iris", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=60, env=_only_aws(env), cwd=tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("modelserver fetch: s3://models/teams/ml/iris") and "SignatureDoesNotMatch" in last, last


def test_an_identity_that_may_not_read_is_told_access_denied(store, iris_path, tmp_path):
    store.upload_tree("models", "locked/iris", iris_path)
    env = {**store.env, "AWS_ACCESS_KEY_ID": s3_store.LISTER_KEY, "AWS_SECRET_ACCESS_KEY": s3_store.LISTER_SECRET}
    done = subprocess.run([sys.executable, "-m", "modelserver", "fetch", "s3://models/locked/iris", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=60, env=_only_aws(env), cwd=tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("modelserver fetch: s3://models/locked/iris/") and "AccessDenied" in last, last
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_a_model_repository_under_an_s3_prefix(store, tmp_path, start_server):
    """Each "directory" below the prefix, and each Keras file in it, is a model, fetched when it loads."""
    from tests import models

    store.upload_tree("models", "repo/double/1", models.scaled(tmp_path / "double", 2.0))
    store.upload_tree("models", "repo/versions", models.versioned(tmp_path / "versions"))
    path = keras_models.two_inputs(tmp_path / "churn.keras", seed=5)
    store.client().upload_file(str(path), "models", "repo/churn.keras")
    server = start_server(None, "--model-repository", "s3://models/repo", "--load-policy", "on-demand",
                          env={**store.env, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    rows = requests.post(server.url("/v2/repository/index"), timeout=30).json()
    assert {r["name"]: r["state"] for r in rows} == {"churn": "UNAVAILABLE", "double": "UNAVAILABLE",
                                                     "versions": "UNAVAILABLE"}
    r = requests.post(server.url("/v1/models/double:predict"), json={"instances": [[1.0, 3.0]]}, timeout=60)
    assert r.json() == {"predictions": [[2.0, 6.0]]}
    r = requests.post(server.url("/v1/models/versions/versions/1:predict"), json={"instances": [[1.0, 3.0]]}, timeout=60)
    assert r.json() == {"predictions": [[1.0, 3.0]]}
    age, feats = np.array([[40.0]], np.float32), np.array([[0.1, 0.2, 0.3]], np.float32)
    r = requests.post(server.url("/v1/models/churn:predict"),
                      json={"instances": [{"age": age[0].tolist(), "features": feats[0].tolist()}]}, timeout=60)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"][0]["proba"], keras_models.predict(path, age, feats)[1][0],
                               atol=1e-5)
    rows = requests.post(server.url("/v2/repository/index"), json={"ready": True}, timeout=30).json()
    assert sorted({r["name"] for r in rows}) == ["churn", "double", "versions"]
