"""The import rules of the house, checked on the source (no module is imported here).

Why: a package's interface is its ``__init__`` (or, for the server and tools, the public
``aiki.engine``); reaching into another package's private modules or names couples code
that must be free to move, and it is how the old layout grew its cycles. The rules:

* no module imports a name starting with ``_`` from a module outside its own package;
* no module imports a private module of another package (``aiki._store._keys`` from
  ``aiki/_context.py``: ``aiki._store`` is another package; use its ``__init__``);
* ``aiki_server`` never imports ``aiki._anything`` (only ``aiki``, ``aiki.engine``,
  ``aiki.embedded``, ``aiki.testing``);
* the SDK (``aiki``) never imports the server (``aiki_server``).

A package is a directory with an ``__init__.py``; the module ``pkg/__init__.py`` belongs to
``pkg``.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def _modules(root: Path) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def _package_of(module: str, path: Path) -> str:
    """The package a module belongs to: itself for an ``__init__``, else its parent."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    base = package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_package(module: str, root: Path = SRC) -> bool:
    return (root / Path(*module.split(".")) / "__init__.py").is_file()


def _imports(path: Path, module: str, root: Path) -> list[tuple[int, str, str | None]]:
    """(line, target module, imported name or None) for every import in the file."""
    package = _package_of(module, path)
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, package)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if (
                    _is_package(sub, root)
                    or (root / Path(*sub.split("."))).with_suffix(".py").is_file()
                ):
                    out.append((node.lineno, sub, None))  # ``from pkg import module``
                else:
                    out.append((node.lineno, target, alias.name))
    return out


def _violations(root: Path = SRC) -> list[str]:
    problems = []
    for module, path in _modules(root):
        own = _package_of(module, path)
        where = f"{path.relative_to(root)}"
        for line, target, name in _imports(path, module, root):
            top = target.split(".")[0]
            if top not in ("aiki", "aiki_server"):
                continue
            if module.split(".")[0] == "aiki" and top == "aiki_server":
                problems.append(f"{where}:{line}: the SDK imports the server ({target})")
                continue
            if module.split(".")[0] == "aiki_server" and top == "aiki":
                if any(part.startswith("_") for part in target.split(".")[1:]):
                    problems.append(
                        f"{where}:{line}: the server imports the SDK's private {target}"
                        " (use aiki, aiki.engine, aiki.embedded or aiki.testing)"
                    )
                    continue
            # the package that holds the target (the target itself if it is a package)
            holder = target if _is_package(target, root) else target.rpartition(".")[0]
            # the importer lives in the holder's package or below it (a module may use
            # its own and its ancestors' modules, never reach down into another package)
            inside = own == holder or own.startswith(holder + ".")
            if not inside:
                # a private module below the holder's package that is not a package
                # __init__: reaching into another package's internals
                if not _is_package(target, root) and target.rpartition(".")[2].startswith("_"):
                    problems.append(
                        f"{where}:{line}: imports the private module {target} of another "
                        f"package (import from {holder}'s __init__)"
                    )
                    continue
                if name is not None and name.startswith("_") and name != "__version__":
                    problems.append(
                        f"{where}:{line}: imports the private name {name} from {target}"
                    )
    return sorted(set(problems))


def test_no_module_reaches_into_another_package() -> None:
    problems = _violations()
    assert not problems, "import rules broken:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("aiki", "from ._store._keys import GROUP\n", "private module aiki._store._keys"),
        ("aiki", "from ._store import _pairs\n", "private name _pairs"),
        ("aiki/_redis", "from .._store._store import Store\n", "private module aiki._store._st"),
        ("aiki", "import aiki_server\n", "the SDK imports the server"),
        ("aiki_server", "from aiki._notify import wait_for_end\n", "the server imports the SDK"),
    ],
)
def test_the_rules_catch_what_they_forbid(
    package: str, source: str, expected: str, tmp_path: Path
) -> None:
    """The checker itself: each kind of forbidden import is reported. The probe goes
    into a copy of the sources, never into src/ (other tests read src/ meanwhile)."""
    root = tmp_path / "src"
    shutil.copytree(SRC, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / package / "_layout_probe_tmp.py").write_text(source)
    problems = _violations(root)
    assert any(expected in p and "_layout_probe_tmp" in p for p in problems), problems
