"""The layering, read from the code: every import of every module (those inside functions too),
with no cycle and no arrow against the layers.

codecs import nothing of runtime/ or server/; runtime/ and the dispatcher and the data plane
nothing of server/; the protocol transports (v1, v2, openai, pages) none of each other; the
operator nothing of the server but the contract it shares (``contract``, ``settings``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"modelserver": ROOT / "modelserver", "modeldeploy_operator": ROOT / "operator"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([pkg, *parts])] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours an imported name lands in (``a.b.c`` may be the function c of a.b)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read() -> None:
    assert "modelserver.dataplane" in GRAPH["modelserver.server.v1"]
    assert "modelserver.interface" in GRAPH["modelserver.codecs.v2"]
    # an import inside a function counts
    assert "modelserver.server.app" in GRAPH["modelserver.workers"]


def test_no_import_cycle() -> None:
    assert _cycles() == []


TRANSPORTS = ("modelserver.server.v1", "modelserver.server.v2", "modelserver.server.openai", "modelserver.server.pages")
RULES = [
    ("modelserver.codecs", ("modelserver.runtime", "modelserver.server", "modelserver.dispatch", "modelserver.dataplane")),
    ("modelserver.runtime", ("modelserver.server", "modelserver.dataplane", "modelserver.dispatch")),
    ("modelserver.dispatch", ("modelserver.server", "modelserver.dataplane")),
    ("modelserver.dataplane", ("modelserver.server",)),
    ("modelserver.interface", ("modelserver.runtime", "modelserver.server", "modelserver.codecs", "modelserver.dispatch")),
    *[(t, tuple(o for o in TRANSPORTS if o != t)) for t in TRANSPORTS],
]


@pytest.mark.parametrize(("importer", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_no_arrow_against_the_layers(importer: str, forbidden: tuple[str, ...]) -> None:
    bad = sorted(
        f"{m} -> {t}" for m, targets in GRAPH.items() if m == importer or m.startswith(importer + ".")
        for t in targets if any(t == f or t.startswith(f + ".") for f in forbidden)
    )
    assert bad == []


def test_the_operator_knows_the_server_only_through_the_contract() -> None:
    allowed = {"modelserver", "modelserver.contract", "modelserver.settings"}
    reached = {t for m, targets in GRAPH.items() if m.startswith("modeldeploy_operator") for t in targets
               if t.startswith("modelserver")}
    assert reached <= allowed, reached - allowed
    # and what it reaches stays light: the operator's image has no TensorFlow, tornado or numpy
    for module in allowed:
        assert {t for t in GRAPH[module] if t.startswith("modelserver")} <= allowed


def test_the_parent_of_worker_processes_stays_light():
    """What ``modelserver serve --workers N`` imports before it forks: no TensorFlow (each worker
    loads its own), no tornado.web and no prometheus_client (it reads its multiprocess setting at
    import, which the parent sets only just before forking)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from modelserver import cli, fetch, logs, workers\n"
        "from modelserver.codecs import mapping\n"
        "from modelserver.runtime import formats, repository\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'prometheus_client', 'keras')"
        " or m == 'tornado.web']\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
