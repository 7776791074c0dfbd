"""Datatype mapping and the settings object (flags over environment over defaults)."""

from __future__ import annotations

import numpy as np
import pytest

from modelserver import dtypes
from modelserver.settings import Settings, from_sources


@pytest.mark.parametrize(
    "v2,np_dtype,tf_name",
    [
        ("BOOL", np.bool_, "bool"), ("UINT8", np.uint8, "uint8"), ("UINT16", np.uint16, "uint16"),
        ("UINT32", np.uint32, "uint32"), ("UINT64", np.uint64, "uint64"), ("INT8", np.int8, "int8"),
        ("INT16", np.int16, "int16"), ("INT32", np.int32, "int32"), ("INT64", np.int64, "int64"),
        ("FP16", np.float16, "float16"), ("FP32", np.float32, "float32"), ("FP64", np.float64, "float64"),
        ("BYTES", object, "string"),
    ],
)
def test_dtype_table(v2, np_dtype, tf_name):
    d = dtypes.from_v2(v2)
    assert d is not None and d.numpy == np.dtype(np_dtype) and d.tf_name == tf_name
    assert dtypes.from_tf(tf_name) is d and dtypes.from_numpy(np.dtype(np_dtype)) is d


def test_unknown_dtypes():
    assert dtypes.from_v2("FP8") is None
    with pytest.raises(ValueError):
        dtypes.from_tf("complex64")


def test_settings_precedence_and_parsing():
    env = {"MODELSERVER_PORT": "9000", "MODELSERVER_BATCHING": "false", "MODELSERVER_TIMEOUT_SECONDS": "2.5"}
    s = from_sources({"port": None}, env)
    assert s.port == 9000 and s.batching is False and s.timeout_seconds == 2.5
    assert from_sources({"port": 7000}, env).port == 7000
    assert from_sources({}, {}).port == Settings().port
    with pytest.raises(ValueError, match="MODELSERVER_PORT"):
        from_sources({}, {"MODELSERVER_PORT": "abc"})
    with pytest.raises(ValueError, match="protocol"):
        from_sources({"protocol": "v9"}, {})


def test_labels_and_keys(tmp_path):
    assert Settings(version_labels="stable=1, canary=2").labels() == {"stable": 1, "canary": 2}
    with pytest.raises(ValueError):
        Settings(version_labels="stable").labels()
    f = tmp_path / "keys"
    f.write_text("k2\n\nk3\n")
    assert Settings(api_keys="k1, ", api_key_file=str(f)).api_key_set() == {"k1", "k2", "k3"}


def test_workers_share_the_cpus_unless_told_otherwise(monkeypatch):
    from modelserver import workers

    monkeypatch.setattr(workers, "cpu_count", lambda: 4)
    shared = workers.share_cpus(Settings(), 2)
    assert (shared.model_threads, shared.tf_threads) == (2, 2)
    assert workers.share_cpus(Settings(), 8).tf_threads == 1  # never below one
    kept = workers.share_cpus(Settings(model_threads=3, tf_threads=4), 2)
    assert (kept.model_threads, kept.tf_threads) == (3, 4)


def test_tf_threads_sizes_tensorflow_s_pools_before_it_starts(tmp_path):
    import subprocess
    import sys

    from tests import models

    models.scaled(tmp_path / "1", 2.0)
    code = (
        "from pathlib import Path; import tensorflow as tf\n"
        "from modelserver.server import app; from modelserver.settings import Settings\n"
        f"app.build_context(Settings(tf_threads=1), Path({str(tmp_path)!r}), 'm')\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["1", "1"]


def test_every_setting_is_in_the_readme_table():
    from pathlib import Path

    from modelserver.settings import env_name, setting_kinds

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("### Settings"):readme.index("Batching is timer-less")]
    missing = [name for name in setting_kinds() if name != "model_path" and env_name(name) not in table]
    assert missing == []
