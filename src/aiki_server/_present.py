"""How runs are presented to people, shared by the dashboard and ``aiki runs show``:
durations as text, tasks in order with their durations, a run's timeline, and data the
server could not decode shown as what it is ("encrypted with key id '1'")."""

from __future__ import annotations

from typing import Any

from aiki.codecs import describe


class Sealed(str):
    """A stored value shown as a description (``[encrypted with key id '1' (...)]``):
    printed as it is, not as a JSON string."""


def readable(data: Any) -> Any:
    """An API answer (a run's JSON) for people: each codec envelope the server could not
    decode replaced by a :class:`Sealed` description, with the server's reason (its
    ``codec_errors``) when it had keys but not the right one. Base64 is never shown."""
    problems = (data.get("codec_errors") or {}) if isinstance(data, dict) else {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, str):
            what = describe(node)
            if what is None:
                return node
            why = problems.get(path or ".")
            return Sealed(f"[{what}: not decrypted: {why}]" if why else f"[{what}]")
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(data, "")


def duration(ms: float | None) -> str:
    """``12 ms``, ``1.25 s``, ``3m 05s``, ``2h 10m``, ``3d 4h``; ``-`` for None."""
    if ms is None:
        return "-"
    ms = max(0.0, float(ms))
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


def prepare_tasks(tasks: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The API's task records (already in start order) with ``name`` and
    ``duration_ms`` (of the last attempt) added."""
    out = []
    for record in tasks or []:
        t = dict(record)
        t0, t1 = t.get("started_at"), t.get("ended_at")
        t["duration_ms"] = (t1 - t0) if isinstance(t0, int) and isinstance(t1, int) else None
        address = str(t.get("address") or "")
        t["name"] = t.get("task") or t.get("kind") or address.split(":", 1)[0]
        out.append(t)
    return out


def timeline(run: dict[str, Any], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What happened to the run, in time order: ``{at, offset_ms, kind, status, text}``
    with offsets from the run's creation. ``tasks`` come from :func:`prepare_tasks`.
    Events in the same millisecond keep the run's order: its start, then task by task
    (in call order), then its end."""
    # (ms, group, task index, step, kind, status, text); group 0: run start, 1: tasks
    # and retries, 2: run end.
    events: list[tuple[int, int, int, int, str, str, str]] = []
    if isinstance(run.get("created_at"), int):
        events.append((run["created_at"], 0, 0, 0, "created", "queued", "run created"))
    # An operator's retry (errors entries with retried_at) starts the run again: the
    # run's started_at is then the retry's, and the first start is in the first entry.
    errors = [e for e in run.get("errors") or [] if isinstance(e, dict)]
    retried = [e for e in errors if isinstance(e.get("retried_at"), int)]
    first = retried[0].get("started_at") if retried else run.get("started_at")
    if isinstance(first, int):
        events.append((first, 0, 0, 1, "started", "running", "first taken by a worker"))
    for i, attempt in enumerate(errors):
        at = attempt.get("at")
        if isinstance(at, int):
            text = f"attempt {attempt.get('attempt', i + 1)} failed: {attempt.get('type')}"
            events.append((at, 1, -1, i, "retry", "awaiting_retry", text))
        if isinstance(attempt.get("retried_at"), int):
            text = f"run {attempt.get('ended_as', 'ended')}: {attempt.get('type')}: "
            text += f"{attempt.get('message')}; retried by an operator"
            events.append((attempt["retried_at"], 1, -1, i, "retried", "queued", text))
    for i, t in enumerate(tasks):
        name = f"{i + 1}. {t['name']}"
        errors = [e for e in t.get("errors") or [] if isinstance(e, dict)]
        for n, error in enumerate(errors):
            if not isinstance(error.get("at"), int):
                continue
            if t.get("status") == "failed" and n == len(errors) - 1:
                continue  # the final failure is the task's end, below
            text = f"{name} attempt {error.get('attempt', n + 1)} failed: {error.get('type')}"
            events.append((error["at"], 1, i, n, "retry", "awaiting_retry", text))
        if isinstance(t.get("started_at"), int):
            attempts = t.get("attempts")
            text = f"{name} started"
            if isinstance(attempts, int) and attempts > 1:
                text = f"{name} attempt {attempts} started"
            events.append((t["started_at"], 1, i, 1000, "task", "running", text))
        status = str(t.get("status") or "ended")
        if isinstance(t.get("ended_at"), int) and status not in ("sleeping", "waiting"):
            text = f"{name} {status}"
            if t.get("duration_ms") is not None:
                text += f" after {duration(t['duration_ms'])}"
            if status == "failed" and errors:
                text += f": {errors[-1].get('type')}: {errors[-1].get('message')}"
            events.append((t["ended_at"], 1, i, 1001, "task", status, text))
    if isinstance(run.get("ended_at"), int):
        status = str(run.get("status"))
        text = f"run {status}"
        final = run.get("error")
        if isinstance(final, dict) and final.get("type"):
            text += f": {final.get('type')}: {final.get('message')}"
        events.append((run["ended_at"], 2, 0, 0, "ended", status, text))
    events.sort(key=lambda e: e[:4])
    start = run.get("created_at") if isinstance(run.get("created_at"), int) else None
    if start is None and events:
        start = events[0][0]
    return [
        {"at": ms, "offset_ms": ms - (start or ms), "kind": kind, "status": status, "text": text}
        for ms, _, _, _, kind, status, text in events
    ]
