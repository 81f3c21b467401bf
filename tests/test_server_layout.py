"""The server package's layout holds: no import cycles among aiki_server's modules (the
app and the dashboard used to import each other, broken by imports inside functions),
no module of it reaching into aiki's private modules (but those still being moved by
their owners), and every module importable on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "aiki_server"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# (``__main__`` modules run the CLI when imported: they are entry points, not modules.)
MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__main__.py"}


def _imports(name: str, path: Path) -> set[str]:
    """The aiki_server modules that ``name`` imports, anywhere in it (inside functions
    too: an import deferred into a function still makes a cycle)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from . import x`` names a submodule when there is one, else a name of base.
            subs = [f"{base}.{a.name}" for a in node.names]
            targets = [m for m in subs if m in MODULES]
            if len(targets) < len(subs):
                targets.append(base)
        else:
            continue
        out.update(t for t in targets if t in MODULES and t != name)
    return out


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_check_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_aiki_server_has_no_import_cycles() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert graph["aiki_server._factory"] >= {"aiki_server.api", "aiki_server.dashboard"}
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph) or [])


def test_aiki_server_imports_only_public_aiki_modules() -> None:
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            offenders += [f"{name}: {m}" for m in modules if m.startswith("aiki._")]
    assert offenders == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_alone(module: str) -> None:
    """Imported first in a fresh interpreter, each module loads (no hidden order)."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
