"""Redis round trips per one-task workflow, and where each comes from.

N one-task workflows one after another (one worker subprocess, warmed up). Over that
window Redis ``MONITOR`` (on a connection of its own, read by a thread) attributes every
top-level command to the connection that sent it — this process's client (start and
notification listener) or the worker subprocess — and ``INFO commandstats`` deltas give
every command executed, including those a Lua script runs inside Redis (which are not
round trips). EVALSHA calls are named by matching the SHA1 of Aiki's scripts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from .._bench import Bench, BenchmarkError
from .._resp import Monitor
from .._workflows import one_task_v1

NAME = "roundtrips"

WHY = {
    "EVALSHA start_run": "create the run + XADD its message + index it",
    "XREADGROUP": "receive the message (blocking read, dedicated connection)",
    "EVALSHA take_run": "fence (revision+1) + load payload and task records",
    "EVALSHA finish_run": "last task's record + result + XACK + XDEL + PUBLISH run-ended",
}
ORDER = list(WHY)
# Sent by the benchmark's own admin connection, not by Aiki.
ADMIN_COMMANDS = {"INFO", "CONFIG", "CLIENT", "ECHO", "MONITOR", "FLUSHALL"}


def _script_names() -> dict[str, str]:
    """SHA1 -> script name for every Lua script in the SDK (for labelling only).

    Scripts are found by shape (a ``name`` and a ``source`` string), so a rename of the
    class or module that defines them only costs the labels, never the measurement."""
    import importlib

    names: dict[str, str] = {}
    for module_name in ("aiki._store._scripts", "aiki.subscribers._redis_streams"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for value in vars(module).values():
            value = getattr(value, "LUA", value)  # a script's binding holds its Lua
            name, source = getattr(value, "name", None), getattr(value, "source", None)
            if isinstance(name, str) and isinstance(source, str):
                names[hashlib.sha1(source.encode()).hexdigest()] = name
    return names


async def run(bench: Bench) -> dict[str, Any]:
    n = bench.sizes.roundtrip_runs
    scripts = _script_names()
    bench.flush()
    before = {c["addr"] for c in bench.admin.client_list()}
    async with bench.workers(1, tag="rtt"):
        for i in range(5):
            await bench.run_one(one_task_v1, i)
        conns = {c["addr"]: c.get("name", "") for c in bench.admin.client_list()}
        worker_addrs = {a for a in conns if a not in before}
        bench.admin.command("CONFIG", "RESETSTAT")
        monitor = Monitor(bench.redis_url)
        try:
            for i in range(n):
                result = await bench.run_one(one_task_v1, i)
                if result != i:
                    raise BenchmarkError(f"run {i} returned {result!r}")
        finally:
            monitor.stop(bench.admin)
        stats = bench.admin.commandstats()

    top: Counter[tuple[str, str]] = Counter()
    inside_lua = 0
    for source, cmd, arg1 in monitor.events:
        if source == "lua":
            inside_lua += 1
            continue
        if cmd in ADMIN_COMMANDS:
            continue
        if source in bench.client_addrs:
            origin = "client"
        elif source in worker_addrs:
            origin = "worker"
        else:
            origin = f"other ({conns.get(source, source) or source})"
        label = f"EVALSHA {scripts.get(arg1.lower(), arg1[:10])}" if cmd == "EVALSHA" else cmd
        top[(origin, label)] += 1

    rows = sorted(
        top.items(),
        key=lambda kv: (ORDER.index(kv[0][1]) if kv[0][1] in ORDER else 99, kv[0]),
    )
    per_run = [
        {
            "from": origin,
            "command": label,
            "per_run": round(count / n, 3),
            "why": WHY.get(label, ""),
        }
        for (origin, label), count in rows
    ]
    own = {k: v for k, v in stats.items() if k.split("|")[0].upper() not in ADMIN_COMMANDS}
    return {
        "method": "MONITOR attribution + INFO commandstats deltas over sequential runs",
        "n": n,
        # Aiki's own: client and worker (an Aiki server's periodic daemons are "other").
        "round_trips_per_run": round(
            sum(c for (origin, _), c in top.items() if origin in ("client", "worker")) / n, 3
        ),
        "by_source": per_run,
        "commands_inside_scripts_per_run": round(inside_lua / n, 3),
        "commandstats_per_run": {k: round(v / n, 3) for k, v in sorted(own.items())},
    }
