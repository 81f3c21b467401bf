"""Smoke test of the benchmark suite: ``python -m benchmarks --quick --no-peers`` works.

It checks that the suite runs end to end and writes a result with every scenario; it
asserts nothing about timings (those depend on the machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCENARIOS = {
    "throughput",
    "latency",
    "steps",
    "replay",
    "idle",
    "memory",
    "roundtrips",
    "redis_clients",
    "durable",
    "typed",
    "search",
    "concurrency",
    "flow_timeouts",
}


def test_quick_benchmark_writes_every_scenario(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-peers", "--results-dir", tmp_path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"

    results = list(tmp_path.glob("*.json"))
    assert len(results) == 1, results
    doc = json.loads(results[0].read_text())

    assert SCENARIOS <= set(doc["scenarios"]), sorted(doc["scenarios"])
    for name in SCENARIOS:
        assert "error" not in doc["scenarios"][name], (name, doc["scenarios"][name])
    for key in ("cores", "python", "redis_version", "cpu_model"):
        assert doc["machine"].get(key), key
    assert doc["redis"]["persistence"].startswith("off")
    assert {t["target"] for t in doc["targets"]}, "no targets reported"
    # 1, 2 and N worker processes, N through `aiki worker --processes N` (one per core).
    throughput = doc["scenarios"]["throughput"]
    assert throughput["one_worker"]["workers"] == 1
    assert throughput["two_workers"]["workers"] == 2
    n = throughput["cli_n_processes"]["workers"]
    assert n == len(os.sched_getaffinity(0))
    assert throughput["cli_n_processes"]["via"] == f"aiki worker --processes {n}"
    # A PASS/MISS/n/a line for each goal of issue #21.
    goals = [t for t in doc["targets"] if t["target"].startswith("#21 ")]
    assert len(goals) == 7, goals
    assert "Targets" in proc.stdout
