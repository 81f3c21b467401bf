#!/usr/bin/env python3
"""Set-up and everyday commands, needing nothing but Python 3.11+.

    python3 dev.py demo     # install into .venv, run the order-processing example end to end
    python3 dev.py test     # install into .venv, run the whole test suite (4 processes)
    python3 dev.py lint     # ruff + mypy + luacheck (the store's Lua scripts)
    python3 dev.py bench    # the benchmark suite (not part of the tests)

The virtual environment lives in ``.venv`` (or ``$AIKI_VENV``); it is (re)installed
whenever ``pyproject.toml`` changes, so a fresh clone needs no other step.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("AIKI_VENV", ROOT / ".venv"))
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".aiki-installed"


def run(*args: str | Path, **kwargs: object) -> int:
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.call([str(a) for a in args], cwd=ROOT, **kwargs)  # type: ignore[arg-type]


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Aiki needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        if run(sys.executable, "-m", "venv", VENV):
            sys.exit("could not create the virtual environment in " + str(VENV))
    if run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip") or run(
        PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[dev]"
    ):
        sys.exit("installing the project failed (see pip's output above)")
    STAMP.write_text(wanted)


def lint_lua() -> int:
    """luacheck over the store's Lua scripts (config: .luacheckrc). Debian's ``lua-check``
    package provides it; without it the lint says so and fails (CI installs it)."""
    if shutil.which("luacheck") is None:
        print("luacheck not found: install it (Debian: apt-get install lua-check)", file=sys.stderr)
        return 1
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "src/aiki/_store/lua").glob("*.lua"))
    return run("luacheck", "--config", ".luacheckrc", *scripts)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    rest = argv[1:]
    if command in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    ensure_venv()
    if command == "demo":
        return run(PYTHON, "examples/order_processing.py", *rest)
    if command == "test":
        # Tests spend most of their time waiting (subprocesses, timers, private Redis
        # servers), so they run in parallel processes (pytest-xdist) even on 2 CPUs; each
        # test starts its own Redis on a free port. `-n 0` runs them in this process;
        # a run of chosen test paths stays in one process.
        whole_suite = not any((ROOT / a.split("::")[0]).exists() for a in rest)
        if whole_suite and not any(a.startswith(("-n", "--numprocesses")) for a in rest):
            rest = ["-n", os.environ.get("AIKI_TEST_PROCESSES", "4"), *rest]
        return run(PYTHON, "-m", "pytest", *rest)
    if command == "lint":
        return (
            run(PYTHON, "-m", "ruff", "check", "src", "tests", "examples", "benchmarks")
            or run(PYTHON, "-m", "mypy")
            or lint_lua()
        )
    if command == "bench":
        return run(PYTHON, "-m", "benchmarks", *rest)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
