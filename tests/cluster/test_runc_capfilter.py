"""The runtime wrapper that lets privileged containers start on hosts with a reduced capability
bounding set: it drops exactly the capabilities the host cannot grant and passes every argument
through to the real runc."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

WRAPPER = Path(__file__).resolve().parents[2] / "cluster" / "runc-capfilter.py"
ALL = ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_BPF"]


def host_missing() -> set[str]:
    spec = importlib.util.spec_from_file_location("runc_capfilter", WRAPPER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.missing_caps()


def fake_runc(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "args.json"
    runc = tmp_path / "runc"
    runc.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(out)!r}, 'w'))\n")
    runc.chmod(0o755)
    return runc, out


def run_wrapper(tmp_path: Path, args: list[str]) -> list[str]:
    runc, out = fake_runc(tmp_path)
    env = dict(os.environ, MODELDEPLOY_REAL_RUNC=str(runc))
    subprocess.run([sys.executable, str(WRAPPER), *args], check=True, env=env, cwd=tmp_path)
    return json.loads(out.read_text())


def caps(kinds=("bounding", "effective", "permitted")):
    return {k: list(ALL) for k in kinds}


def test_create_filters_bundle_spec_and_passes_args(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": {"capabilities": caps()}, "root": {"path": "rootfs"}}))
    args = ["--root", "/run/x", "--log", "/tmp/l", "create", "--bundle", str(bundle), "--pid-file", "p", "cid"]
    assert run_wrapper(tmp_path, args) == args
    spec = json.loads((bundle / "config.json").read_text())
    expected = [c for c in ALL if c not in host_missing()]
    for values in spec["process"]["capabilities"].values():
        assert values == expected
    assert spec["root"] == {"path": "rootfs"}


def test_exec_filters_process_file(tmp_path):
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["sh"], "capabilities": caps(("bounding", "ambient"))}))
    args = ["exec", "--process", str(proc), "--detach", "cid"]
    assert run_wrapper(tmp_path, args) == args
    data = json.loads(proc.read_text())
    expected = [c for c in ALL if c not in host_missing()]
    assert data["capabilities"]["bounding"] == expected
    assert data["args"] == ["sh"]


def test_other_commands_untouched(tmp_path):
    args = ["--root", "/run/x", "state", "cid"]
    assert run_wrapper(tmp_path, args) == args
