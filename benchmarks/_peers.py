"""The peer systems (arq, SAQ, DBOS), measured by the scripts in ``shared/peers``.

The scripts are called where they are, never copied. Their virtualenv follows
``run_peers.sh``: ``$PEERS_VENV``, else ``peerbench-venv`` under ``$TMPDIR`` (or
``/tmp``), created with ``$PYTHON`` (or ``python3``) and (re)installed from the
directory's ``requirements.txt`` when that file changed. Each script prints one JSON
object on its last stdout line.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import trio

# (key, script, arguments besides --redis-url); DBOS uses SQLite, not Redis.
RUNS = [
    ("arq_throughput", "arq_bench.py", ["--mode", "throughput"], True),
    ("arq_latency", "arq_bench.py", ["--mode", "latency"], True),
    ("saq_throughput", "saq_bench.py", ["--mode", "throughput"], True),
    ("saq_latency", "saq_bench.py", ["--mode", "latency"], True),
    ("dbos_queued", "dbos_bench.py", ["--mode", "queued"], False),
]


def peers_venv() -> Path:
    if os.environ.get("PEERS_VENV"):
        return Path(os.environ["PEERS_VENV"])
    return Path(os.environ.get("TMPDIR") or "/tmp") / "peerbench-venv"


async def _run(cmd: list[str], timeout: float, cwd: Path) -> tuple[int, str, str]:
    with trio.move_on_after(timeout) as scope:
        proc = await trio.run_process(
            cmd, capture_stdout=True, capture_stderr=True, check=False, cwd=cwd
        )
        return (
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
    assert scope.cancelled_caught
    return -1, "", f"timed out after {timeout:.0f} s"


async def ensure_venv(peers_dir: Path) -> tuple[Path | None, str]:
    """The peers' python, or None and why not."""
    requirements = peers_dir / "requirements.txt"
    if not requirements.exists():
        return None, f"no peer scripts at {peers_dir}"
    venv = peers_venv()
    python = venv / "bin" / "python"
    if not python.exists():
        creator = os.environ.get("PYTHON") or shutil.which("python3") or "python3"
        code, _out, err = await _run([creator, "-m", "venv", str(venv)], 300, peers_dir)
        if code != 0:
            return None, f"could not create {venv}: {err.strip()[-300:]}"
    stamp = venv / ".peerbench-requirements.txt"
    wanted = requirements.read_bytes()
    if not stamp.exists() or stamp.read_bytes() != wanted:
        print(f"installing the peers' requirements into {venv} (first time: a minute) ...")
        code, _out, err = await _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(requirements),
            ],
            900,
            peers_dir,
        )
        if code != 0:
            return None, f"pip install into {venv} failed: {err.strip()[-300:]}"
        stamp.write_bytes(wanted)
    return python, f"venv {venv}"


async def run_peers(peers_dir: Path, redis_url: str) -> dict[str, Any]:
    """Every peer run: ``{"available", "note", "results": {key: json or {"error"}}}``."""
    python, note = await ensure_venv(peers_dir)
    if python is None:
        return {"available": False, "note": note, "results": {}}
    results: dict[str, Any] = {}
    for key, script, args, uses_redis in RUNS:
        cmd = [str(python), str(peers_dir / script), *args]
        if uses_redis:
            cmd += ["--redis-url", redis_url]
        print(f"  peer {key} ...", flush=True)
        code, out, err = await _run(cmd, 600, peers_dir)
        lines = [line for line in out.splitlines() if line.strip()]
        try:
            if code != 0 or not lines:
                raise ValueError(f"exit status {code}")
            results[key] = json.loads(lines[-1])
        except ValueError as exc:
            results[key] = {"error": f"{exc}; stderr: {err.strip()[-300:]}"}
    ok = any("error" not in r for r in results.values())
    return {"available": ok, "note": note, "results": results}
