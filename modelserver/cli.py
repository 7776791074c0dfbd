"""The ``modelserver`` command: ``serve`` a model (the bundled demo by default), ``fetch`` one,
``drain`` a running server (a preStop hook), build the ``demo``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path, PurePosixPath

from modelserver import __version__, demo
from modelserver import settings as settings_mod
from modelserver.errors import ModelLoadError


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    for name, (kind, meta) in settings_mod.setting_kinds().items():
        if name == "model_path":
            continue
        flag = "--" + name.replace("_", "-")
        env = settings_mod.env_name(name)
        help_text = f"{meta['help']} (env {env})"
        if kind is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            p.add_argument(flag, dest=name, type=kind, default=None, choices=meta.get("choices"), help=help_text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelserver", description="Serve TensorFlow and Hugging Face models over V1, V2 and OpenAI-style HTTP.")
    p.add_argument("--version", action="version", version=f"modelserver {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model directory (the demo model when none is given)")
    serve.add_argument("model_path", nargs="?", default=None, help="a model (SavedModel, Keras file, model.py or Hugging Face "
                       "directory), a directory of numbered versions, or s3:// or http(s):// to fetch one from")
    _add_setting_flags(serve)
    fetch = sub.add_parser("fetch", help="download or copy a model into a directory")
    fetch.add_argument("uri", help="s3://bucket/prefix, http(s)://...tar.gz|.zip, file:///path, or a local path")
    fetch.add_argument("dir", help="destination directory")
    drain = sub.add_parser("drain", help="tell a running server to drain (a preStop hook), then wait")
    drain.add_argument("--pid", type=int, default=1, help="the server's process id (default 1, as in a container)")
    drain.add_argument("--wait", type=float, default=5.0, help="seconds to wait after signalling")
    d = sub.add_parser("demo", help="build the bundled demo model (done on first serve otherwise)")
    d.add_argument("dir", nargs="?", default=None, help=f"where to build it (default {demo.default_dir()})")
    return p


def _serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        s = settings_mod.from_sources(overrides)
    except ValueError as e:
        print(f"modelserver: {e}", file=sys.stderr)
        return 2
    from modelserver import fetch, logs, workers
    from modelserver.codecs import mapping  # light: the parent of worker processes must stay so

    logs.configure(s.log_level, s.log_format)
    try:
        mapping.from_settings(s)  # refused at start: a template that is not JSON, an expression that does not compile
    except ValueError as e:
        print(f"modelserver: {e}", file=sys.stderr)
        return 2
    if s.model_repository:
        return _serve_repository(s)
    if s.model_path and s.model_path.startswith(fetch.REMOTE):
        try:
            path = fetch.fetch_to_cache(s.model_path)
        except fetch.FetchError as e:
            print(f"modelserver: {e}", file=sys.stderr)
            return 2
        remote = PurePosixPath(s.model_path.split("://", 1)[1].rstrip("/"))
        name = s.name or (remote.parent.name if remote.name.isdigit() else remote.name.split(".")[0] or "model")
    elif s.model_path:
        path = Path(s.model_path)
        name = s.name or (path.parent.name if path.name.isdigit() else path.stem if path.is_file() else path.name)
    else:
        print("modelserver: no model given, serving the bundled iris demo model", file=sys.stderr)
        # building the demo starts TensorFlow; with workers or sized thread pools, do it elsewhere
        isolated = s.workers != 1 or s.tf_threads > 0
        path = workers.ensure_demo_isolated() if isolated else demo.ensure()
        name = s.name or "iris"
    if s.workers != 1:
        # decided before anything imports TensorFlow: the workers are forked from this process
        try:
            n = workers.count(s, path, name)
        except (ModelLoadError, ValueError, OSError) as e:
            print(f"modelserver: {e}", file=sys.stderr)
            return 2
        if n > 1:
            return workers.run(s, path, name, n)
    from modelserver.server import app

    try:
        ctx = app.build_context(s, path, name)
    except (ModelLoadError, ValueError, OSError) as e:
        print(f"modelserver: {e}", file=sys.stderr)
        return 2
    app.run_loop(app.serve(ctx), s.event_loop)
    return 0


def _serve_repository(s: settings_mod.Settings) -> int:
    """Serve every model of a repository (``--model-repository``), loaded as the load policy says."""
    from modelserver.runtime.repository import list_repository

    if s.model_path:
        print(f"modelserver: give a model path ({s.model_path}) or --model-repository ({s.model_repository}), "
              "not both", file=sys.stderr)
        return 2
    if s.workers != 1:
        print("modelserver: --model-repository serves from one process: each worker would load and unload its own "
              "copies against its own budget; use replicas (or --workers 1)", file=sys.stderr)
        return 2
    if s.name or s.version_labels:
        print("modelserver: --name and --version-labels name one model; a repository's models are named by their "
              "directories", file=sys.stderr)
        return 2
    if "://" in s.model_repository and not s.model_repository.startswith("s3://"):
        print(f"modelserver: a model repository is a directory or an s3:// prefix, got {s.model_repository}",
              file=sys.stderr)
        return 2
    if not s.model_repository.startswith("s3://"):
        try:
            list_repository(Path(s.model_repository))
        except ModelLoadError as e:
            print(f"modelserver: {e.message}", file=sys.stderr)
            return 2
    # TensorFlow's oneDNN operations allocate from a pool that keeps what it once held: an unloaded
    # model's memory would never go back. Without them it does (unless the user decided otherwise).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from modelserver.server import app

    try:
        ctx = app.build_context(s, None, "")
    except (ModelLoadError, ValueError, OSError) as e:
        print(f"modelserver: {e}", file=sys.stderr)
        return 2
    app.run_loop(app.serve(ctx), s.event_loop)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "fetch":
        from modelserver.fetch import FetchError, fetch

        try:
            fetch(args.uri, Path(args.dir))
        except FetchError as e:
            print(f"modelserver fetch: {e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "drain":
        try:
            os.kill(args.pid, signal.SIGUSR1)
        except OSError as e:
            print(f"modelserver drain: cannot signal process {args.pid}: {e}", file=sys.stderr)
            return 1
        time.sleep(args.wait)
        return 0
    target = demo.ensure(Path(args.dir) if args.dir else None)
    print(target)
    return 0
