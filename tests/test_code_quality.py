"""The code stays ruff-clean and type-checks with mypy (both run from the dev extras)."""

from __future__ import annotations

import subprocess
import sys

from _helpers import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_clean() -> None:
    result = _run("ruff", "check", "src", "tests", "examples", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


MAX_MODULE_LINES = 500
"""Small modules with one job each (#15): a module past this is split, not grown."""


def test_no_source_module_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in sorted((ROOT / "src").rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them): {long}"


TEXT_SUFFIXES = {".py", ".lua", ".css", ".js", ".html", ".md"}


def test_no_merge_conflict_markers_are_committed() -> None:
    """A conflict resolved badly once left markers in the dashboard's CSS for a day."""
    markers = ("<<<<<<< ", ">>>>>>> ", "=======\n")
    found = []
    for folder in ("src", "tests", "docs", "examples", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(True), 1):
                if line.startswith(markers) and (line != "=======\n" or path.suffix != ".md"):
                    found.append(f"{path.relative_to(ROOT)}:{n}")
    assert not found, f"merge conflict markers: {found}"
