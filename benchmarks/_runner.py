"""``python -m benchmarks``: every Aiki scenario, then the peers, on one private Redis.

Starts a private Redis (no persistence: ``appendonly no``, ``save ""``) that Aiki and
the peers share, an Aiki server subprocess when ``aiki_server`` provides
``Settings``/``serve_server`` (the hot path does not use it), and worker subprocesses
per scenario. Prints the tables and writes ``benchmarks/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import trio

import aiki
from aiki.embedded import find_redis_server, free_port, open_embedded_redis

from . import _report
from ._bench import FULL, QUICK, Bench
from ._common import DEFAULT_PEERS_DIR, RESULTS_DIR, machine_description, now
from ._peers import run_peers
from ._procs import start_server
from ._resp import Resp
from .scenarios import SCENARIOS

PERSISTENCE = 'off for Aiki and the peers alike (appendonly no, save "")'


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run; no peers")
    p.add_argument("--no-peers", action="store_true", help="do not run arq, SAQ and DBOS")
    p.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    p.add_argument(
        "--peers-dir",
        type=Path,
        default=Path(os.environ.get("AIKI_PEERS_DIR") or DEFAULT_PEERS_DIR),
        help="the peer scripts (default: shared/peers beside the repository)",
    )
    return p.parse_args(argv)


def _write(doc: dict[str, Any], results_dir: Path, stamp: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{stamp}{'-quick' if doc['quick'] else ''}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


async def _client_addrs(admin: Resp, before: set[str]) -> frozenset[str]:
    return frozenset(c["addr"] for c in admin.client_list() if c["addr"] not in before)


async def amain(args: argparse.Namespace, doc: dict[str, Any], log_dir: Path) -> bool:
    sizes = QUICK if args.quick else FULL
    names = args.scenario or list(SCENARIOS)
    ok = True
    binary = find_redis_server()
    async with open_embedded_redis(binary=binary, appendonly=False) as redis:
        admin = Resp.from_url(redis.url)
        info = admin.info("server")
        doc["machine"] = machine_description(info, binary)
        doc["redis"] = {
            "version": info.get("redis_version"),
            "binary": binary,
            "url": redis.url,
            "persistence": PERSISTENCE,
            "shared_with_peers": not (args.quick or args.no_peers),
        }
        m = doc["machine"]
        print(
            f"machine: {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable), "
            f"{m['python']}, {m['platform']}"
        )
        print(
            f"redis:   {Path(binary).name} {info.get('redis_version')} at {redis.url}, private;"
            f" persistence {PERSISTENCE}"
        )

        server, note = await start_server(redis.url, free_port(), log_dir)
        doc["server"] = {"running": server is not None, "note": note}
        print(f"server:  {note}" + ("" if server else " (the hot path does not use it)"))
        print(f"sizes:   {'quick' if args.quick else 'full'} {sizes}")
        try:
            before = {c["addr"] for c in admin.client_list()}
            async with aiki.client(redis_url=redis.url) as client:
                assert redis.pid is not None
                bench = Bench(
                    redis_url=redis.url,
                    redis_pid=redis.pid,
                    admin=admin,
                    client=client,
                    client_addrs=await _client_addrs(admin, before),
                    sizes=sizes,
                    log_dir=log_dir,
                    quick=args.quick,
                )
                for name in names:
                    print(f"scenario {name} ...", flush=True)
                    t0 = now()
                    try:
                        result = await SCENARIOS[name].run(bench)
                    except Exception as exc:
                        ok = False
                        traceback.print_exc()
                        result = {"error": f"{type(exc).__name__}: {exc}"}
                    result["wall_s"] = round(now() - t0, 1)
                    doc["scenarios"][name] = result
            if args.quick or args.no_peers:
                doc["peers"] = {
                    "available": False,
                    "note": "--quick" if args.quick else "--no-peers",
                    "results": {},
                }
            else:
                admin.command("FLUSHALL")
                print(f"peers from {args.peers_dir} against {redis.url} ...", flush=True)
                doc["peers"] = await run_peers(args.peers_dir, redis.url)
        finally:
            if server is not None:
                await server.stop()
            admin.close()
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    doc: dict[str, Any] = {
        "schema": 1,
        "timestamp": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "quick": args.quick,
        "scenarios": {},
    }
    log_dir = Path(tempfile.mkdtemp(prefix="aiki-bench-"))
    ok = trio.run(amain, args, doc, log_dir)
    doc.setdefault("machine", {})["loadavg_at_end"] = list(os.getloadavg())
    doc["targets"] = _report.targets(doc)
    print()
    print(_report.render(doc))
    path = _write(doc, args.results_dir, stamp)
    print(f"\nresults: {path}")
    if ok:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        print(f"child process logs kept in {log_dir}")
    return 0 if ok else 1
