"""The printed tables and the target verdicts, from the result document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Doc = dict[str, Any]


def _get(doc: Doc, *path: str) -> Any:
    cur: Any = doc
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _peer(doc: Doc, key: str, field: str) -> float | None:
    value = _get(doc, "peers", "results", key, field)
    return float(value) if isinstance(value, int | float) else None


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


# -- targets --------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


Target = tuple[str, Callable[[], float | None], str, float, str]


def _performance_goals(doc: Doc) -> list[Target]:
    """The goals of issue #21 (Performance), each a PASS/MISS line of its own: ratios to
    arq from one and from two worker processes, latency, and CPU per run, per start and
    per memoized step. CPU per run and per start are the throughput round's
    (one worker process, one producer): the worker processes' CPU, and the client
    process's (starting the runs and receiving their ends) over the measured window,
    divided by the runs."""
    s = "scenarios"
    arq = _peer(doc, "arq_throughput", "per_s")
    one = _get(doc, s, "throughput", "one_worker", "per_s")
    two = _get(doc, s, "throughput", "two_workers", "per_s")
    cpu = ("scenarios", "throughput", "one_worker", "cpu_ms_per_run")
    return [
        ("#21 throughput, 1 worker process >= 1.5x arq", lambda: _ratio(one, arq), ">=", 1.5, "x"),
        (
            "#21 throughput, 2 worker processes >= 1.2x arq",
            lambda: _ratio(two, arq),
            ">=",
            1.2,
            "x",
        ),
        ("#21 latency p50 <= 1.2 ms", lambda: _get(doc, s, "latency", "p50_ms"), "<=", 1.2, "ms"),
        ("#21 latency p99 <= 3 ms", lambda: _get(doc, s, "latency", "p99_ms"), "<=", 3.0, "ms"),
        (
            "#21 worker CPU per one-task run <= 0.3 ms",
            lambda: _get(doc, *cpu, "workers"),
            "<=",
            0.3,
            "ms",
        ),
        (
            "#21 client CPU per start <= 0.2 ms",
            lambda: _get(doc, *cpu, "client_process"),
            "<=",
            0.2,
            "ms",
        ),
        (
            "#21 <= 0.15 ms per memoized step",
            lambda: _get(doc, s, "steps", "ms_per_step"),
            "<=",
            0.15,
            "ms",
        ),
    ]


def targets(doc: Doc) -> list[dict[str, Any]]:
    s = "scenarios"
    aiki_tp = _get(doc, s, "throughput", "one_worker", "per_s")
    items: list[Target] = [
        (
            "one-task throughput >= 1.0x arq",
            lambda: _ratio(aiki_tp, _peer(doc, "arq_throughput", "per_s")),
            ">=",
            1.0,
            "x",
        ),
        (
            "one-task throughput >= 10x DBOS queued",
            lambda: _ratio(aiki_tp, _peer(doc, "dbos_queued", "per_s")),
            ">=",
            10.0,
            "x",
        ),
        ("latency p50 <= 5 ms", lambda: _get(doc, s, "latency", "p50_ms"), "<=", 5.0, "ms"),
        ("latency p99 <= 20 ms", lambda: _get(doc, s, "latency", "p99_ms"), "<=", 20.0, "ms"),
        (
            "<= 1 ms per memoized step",
            lambda: _get(doc, s, "steps", "ms_per_step"),
            "<=",
            1.0,
            "ms",
        ),
        (
            "replay of 100 recorded tasks <= 50 ms",
            lambda: _get(doc, s, "replay", "resume_ms"),
            "<=",
            50.0,
            "ms",
        ),
        (
            "idle worker <= 0.05 CPU s per 10 s",
            lambda: _get(doc, s, "idle", "worker_cpu_s_per_10s"),
            "<=",
            0.05,
            "s",
        ),
        (
            "search: ~10 runs by attribute among 100,000 < 100 ms (p99)",
            lambda: _get(doc, s, "search", "by_attribute", "p99_ms"),
            "<=",
            100.0,
            "ms",
        ),
        (
            "RSS growth <= 10 % over the runs",
            lambda: _get(doc, s, "memory", "growth_pct"),
            "<=",
            10.0,
            "%",
        ),
        (
            "task timeout=1 s: each attempt cancelled within 1.5 s",
            lambda: _get(doc, s, "flow_timeouts", "timeout_s_per_attempt"),
            "<=",
            1.5,
            "s",
        ),
        (
            "silent task retried within heartbeat_timeout (1 s) + 2 s",
            lambda: _get(doc, s, "flow_timeouts", "heartbeat_retry_s"),
            "<=",
            3.0,
            "s",
        ),
        *_performance_goals(doc),
    ]
    out = []
    for name, value_fn, op, limit, unit in items:
        value = value_fn()
        if value is None:
            status = "n/a"
        elif op == ">=":
            status = "PASS" if value >= limit else "MISS"
        else:
            status = "PASS" if value <= limit else "MISS"
        out.append(
            {
                "target": name,
                "value": None if value is None else round(float(value), 3),
                "op": op,
                "limit": limit,
                "unit": unit,
                "status": status,
            }
        )
    return out


# -- printing -------------------------------------------------------------------------


def _aiki_rows(doc: Doc) -> list[list[str]]:
    s = doc.get("scenarios", {})
    rows: list[list[str]] = []

    def add(scenario: str, metric: str, value: Any, digits: int = 1) -> None:
        rows.append([scenario, metric, _fmt(value, digits)])

    for key, label in (
        ("one_worker", "1 worker"),
        ("two_workers", "2 workers"),
        ("one_worker_50_producers", "1 worker, 50 producers (info)"),
        ("one_worker_start_many", "1 worker, one start_many (info)"),
        ("cli_n_processes", "aiki worker --processes {workers}"),
    ):
        r = _get(s, "throughput", key)
        if r:
            label = label.format(workers=r.get("workers"))
            add(
                "throughput",
                f"{label}: workflows/s ({r['n']} runs; starts took {r['enqueue_s']:.2f} s)",
                r["per_s"],
            )
            cpu = r["cpu_ms_per_run"]
            add(
                "throughput",
                f"{label}: CPU ms/run client / workers / redis",
                f"{cpu['client_process']:.3f} / {cpu['workers']:.3f} / {cpu['redis']:.3f}",
            )
            add("throughput", f"{label}: other load on the machine, cores", r["other_cpu_cores"], 2)
    r = s.get("typed")
    if r and "plain" in r:
        for label in ("plain", "typed", "encrypted"):
            if label in r:
                t = r[label]
                cpu = t["cpu_ms_per_run"]
                add(
                    "typed",
                    f"one task, {label}: workflows/s; CPU ms/run client / workers / redis",
                    f"{t['per_s']:.1f}; {cpu['client_process']:.3f} / {cpu['workers']:.3f}"
                    f" / {cpu['redis']:.3f}",
                )
    r = s.get("search")
    if r and "by_attribute" in r:
        a = r["by_attribute"]
        add(
            "search",
            f"~{a['matches']} runs by attribute among {r['runs']}: p50 / p99 / max ms",
            f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} / {a['max_ms']:.2f}",
        )
        for key, label in (
            ("completed_page", "first 50 completed"),
            ("workflow_and_status_page", "first 50 of a workflow AND a status"),
        ):
            add(
                "search",
                f"{label}: p50 / p99 ms",
                f"{r[key]['p50_ms']:.2f} / {r[key]['p99_ms']:.2f}",
            )
        add("search", "populate (engine scripts, pipelined), s", r["populate_s"], 2)
    r = s.get("flow_timeouts")
    if r and "timeout_s_per_attempt" in r:
        add(
            "flow_timeouts",
            "task timeout=1 s: s per attempt (worst)",
            r["timeout_s_per_attempt"],
            2,
        )
        add("flow_timeouts", "lost heartbeat (1 s) -> retry, s (worst)", r["heartbeat_retry_s"], 2)
    r = s.get("latency")
    if r and "p50_ms" in r:
        add(
            "latency",
            f"p50 / p99 / mean ms ({r['n']} runs)",
            f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['mean_ms']:.2f}",
        )
    r = s.get("steps")
    if r and "ms_per_step" in r:
        add("steps", "t1 / t20 mean ms", f"{r['t1_mean_ms']:.2f} / {r['t20_mean_ms']:.2f}")
        add(
            "steps",
            "ms per memoized step (mean; medians)",
            f"{r['ms_per_step']:.3f}; {r['ms_per_step_from_medians']:.3f}",
        )
    r = s.get("replay")
    if r and "resume_ms" in r:
        add("replay", "resume of 100 recorded tasks ms (in worker)", r["resume_ms"], 2)
        add(
            "replay",
            "  of which: raise -> fn entry / replay",
            f"{r['raise_to_entry_ms']:.2f} / {r['replay_in_worker_ms']:.2f}",
        )
        add(
            "replay",
            "client-observed extra ms (fail-once - plain)",
            r["client_observed_extra_ms"],
            2,
        )
        add(
            "replay",
            "direct in client: load ms / replay ms",
            f"{r['direct_load_ms']:.2f} / {r['direct_replay_ms']:.2f}",
        )
    r = s.get("idle")
    if r and "worker_cpu_s_per_10s" in r:
        add(
            "idle",
            "worker CPU s per 10 s (stat; schedstat)",
            f"{r['worker_cpu_s_per_10s']:.3f}; {_fmt(r.get('worker_cpu_s_per_10s_schedstat'), 4)}",
        )
        add(
            "idle",
            "client process / redis CPU s per 10 s",
            f"{r['client_process_cpu_s_per_10s']:.3f} / {r['redis_cpu_s_per_10s']:.3f}",
        )
    r = s.get("memory")
    if r and "growth_pct" in r:
        add(
            "memory",
            "worker RSS MB cold / before / after",
            f"{r['rss_cold_kb'] / 1024:.1f} / {r['rss_before_kb'] / 1024:.1f} / "
            f"{r['rss_after_kb'] / 1024:.1f}",
        )
        add(
            "memory",
            f"RSS growth % over {r['runs']:,} runs (from cold)",
            f"{r['growth_pct']:.2f} ({r['growth_from_cold_pct']:.2f})",
        )
    r = s.get("roundtrips")
    if r and "round_trips_per_run" in r:
        add("roundtrips", "Redis round trips per one-task workflow", r["round_trips_per_run"], 2)
    r = s.get("redis_clients")
    if r and "glide" in r:
        for impl in ("native", "glide", "redis-py"):
            v = r.get(impl) or {}
            add(
                "redis_clients",
                f"{impl}: CPU us/call, ops/s; one-task workflows/s ({v.get('n')} runs)",
                f"{v.get('cpu_us_per_call')} us, {v.get('ops_per_s')}; {v.get('workflows_per_s')}",
            )
    for name, value in s.items():
        if isinstance(value, dict) and "error" in value:
            add(name, "ERROR", value["error"][:80])
    return rows


def _peer_rows(doc: Doc) -> list[list[str]]:
    s = doc.get("scenarios", {})

    def cell(aiki: float | None, key: str, field: str, digits: int = 1) -> str:
        peer = _peer(doc, key, field)
        if peer is None:
            return "-"
        ratio = _ratio(aiki, peer)
        text = _fmt(peer, digits)
        return f"{text} ({ratio:.2f}x)" if ratio is not None else text

    rows: list[list[str]] = []
    n = _get(s, "throughput", "cli_n_processes", "workers")
    for key, label in (
        ("one_worker", "1 worker"),
        ("two_workers", "2 workers"),
        ("cli_n_processes", f"{n} workers (aiki worker --processes {n})"),
    ):
        tp = _get(s, "throughput", key, "per_s")
        if tp is None and key == "cli_n_processes":
            continue
        rows.append(
            [
                f"throughput /s, Aiki {label}",
                _fmt(tp),
                cell(tp, "arq_throughput", "per_s"),
                cell(tp, "saq_throughput", "per_s"),
                cell(tp, "dbos_queued", "per_s"),
            ]
        )
    for field in ("p50_ms", "p99_ms"):
        lat = _get(s, "latency", field)
        rows.append(
            [
                f"latency {field.replace('_', ' ')}",
                _fmt(lat, 2),
                cell(lat, "arq_latency", field, 2),
                cell(lat, "saq_latency", field, 2),
                "-",
            ]
        )
    return rows


def render(doc: Doc) -> str:
    out: list[str] = []
    out.append("Aiki figures")
    out.append(_table(["scenario", "metric", "value"], _aiki_rows(doc)))
    rt = _get(doc, "scenarios", "roundtrips", "by_source")
    if rt:
        out.append("")
        n = _get(doc, "scenarios", "roundtrips", "n")
        out.append(f"Redis round trips per one-task workflow ({n} sequential runs, MONITOR)")
        rows = [[r["from"], r["command"], f"{r['per_run']:.2f}", r["why"]] for r in rt]
        inside = _get(doc, "scenarios", "roundtrips", "commands_inside_scripts_per_run")
        rows.append(["", "(commands run inside the scripts)", _fmt(inside, 2), "not round trips"])
        out.append(_table(["from", "command", "per run", "why"], rows))
    peers = doc.get("peers") or {}
    out.append("")
    if peers.get("available"):
        out.append(
            "Against the peers (peer figure and the ratio Aiki/peer: "
            "throughput higher is better, latency lower is better)"
        )
        out.append(_table(["metric", "Aiki", "arq", "SAQ", "DBOS queued"], _peer_rows(doc)))
        versions = {
            r.get("system"): r.get("version")
            for r in (peers.get("results") or {}).values()
            if r.get("system")
        }
        out.append(
            "  peers: "
            + ", ".join(f"{k} {v}" for k, v in versions.items())
            + f"; arq/SAQ on the same Redis, DBOS on SQLite; {peers.get('note', '')}"
        )
        for key, r in (peers.get("results") or {}).items():
            if "error" in r:
                out.append(f"  peer {key}: FAILED ({r['error'][:200]})")
    else:
        out.append(f"Peers: not measured ({peers.get('note', 'disabled')})")
    out.append("")
    out.append("Targets")
    rows = []
    for t in doc.get("targets", []):
        value = "-" if t["value"] is None else f"{t['value']:g} {t['unit']}"
        rows.append([t["status"], t["target"], value])
    out.append(_table(["", "target", "measured"], rows))
    return "\n".join(out)
