"""The dashboard: server-rendered HTML pages over the same Store as the API.

``/`` runs (filters: status, workflow, version, time range; cursor paging),
``/runs/<id>`` one run (tasks in order with durations, attempts, payloads and results,
errors with tracebacks, a timeline, cancel/pause/resume/retry buttons), ``/workflows``
the registered versions with their input and output schemas,
``/workflows/<name>/<version>`` a form and JSON editor to start a run (validated against
the schema), ``/workers`` the worker registry, ``/schedules`` the schedules,
``/dead-letters`` the messages no worker could use (requeue and discard buttons). Jinja
templates (autoescaped) and a
small stylesheet and script ship in this package (``templates/``, ``static/``); there
is no build step. The buttons and the live refresh of a running run call the JSON API
(``/api/v1/...``) with ``fetch``: the dashboard itself never writes.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response, render_template, request

from aiki import ConfigurationError
from aiki.engine import RUN_STATUSES, TERMINAL_STATUSES, RunQuery, RunRecord
from aiki.engine import list_schedules as read_schedules

from .._errors import ApiError
from .._limits import DEFAULT_RUNS_LIMIT, MAX_LIST_LIMIT
from .._observe import list_workers, queue_stats
from .._paging import RunFilter, is_entry_id, list_runs_page
from .._present import Sealed, duration, prepare_tasks, readable, timeline
from .._state import current_state

blueprint = Blueprint("dashboard", __name__)

API_PREFIX = "/api/"
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
PAGE_SIZES = (25, 50, 100, 200)
FILTER_ARGS = (
    "status", "workflow", "version", "reference_id", "attr", "range", "from", "to", "limit",
    "live",
)  # fmt: skip
RANGES = {
    "15m": ("last 15 minutes", 15 * 60_000),
    "1h": ("last hour", 3_600_000),
    "6h": ("last 6 hours", 6 * 3_600_000),
    "24h": ("last 24 hours", 24 * 3_600_000),
    "7d": ("last 7 days", 7 * 24 * 3_600_000),
    "30d": ("last 30 days", 30 * 24 * 3_600_000),
}
# Colors of the status badges, by status (CSS classes in static/dashboard.css).
BADGES = {
    "completed": "ok",
    "failed": "bad",
    "cancelled": "muted",
    "running": "run",
    "queued": "wait",
    "scheduled": "wait",
    "paused": "warn",
    "awaiting_retry": "warn",
    "awaiting_rate_limit": "wait",
    "awaiting_concurrency": "wait",
    "sleeping": "idle",
    "awaiting_event": "idle",
    "awaiting_child_workflow": "idle",
    "waiting": "idle",
    "timed_out": "bad",
    "stale": "muted",
    "live": "ok",
}
SECURITY_HEADERS = {
    # Pages only load their own script and stylesheet; inline style attributes draw the
    # timeline bars. No framing (the pages have buttons).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def wants_html() -> bool:
    """Whether an error for this request should be an HTML page: a browser asking for a
    page outside the API and the probes."""
    path = request.path
    if path.startswith(API_PREFIX) or path in PROBES:
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


async def html_error(status: int, message: str) -> Response:
    body = await render_template("error.html", status=status, message=message, page=None)
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    response.headers.update(SECURITY_HEADERS)
    return response


@blueprint.after_app_request
async def _security_headers(response: Response) -> Response:
    if response.content_type and response.content_type.startswith("text/html"):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


@blueprint.app_template_filter("when")
def _when(ms: int | None) -> str:
    """A Unix time in ms as UTC text (the page's script shows it in local time)."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@blueprint.app_template_filter("iso")
def _iso(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


blueprint.add_app_template_filter(duration, "duration")


@blueprint.app_template_filter("pretty")
def _pretty(value: Any) -> str:
    """JSON with indentation (escaped by the template like any text); a value shown
    as a description (encrypted data) as that text."""
    if isinstance(value, Sealed):
        return str(value)
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


@blueprint.app_template_filter("dict_without")
def _dict_without(mapping: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in keys}


@blueprint.app_template_global()
def badge(status: str | None) -> str:
    return BADGES.get(status or "", "muted")


@blueprint.app_context_processor
def _context() -> dict[str, Any]:
    root = request.root_path.rstrip("/")
    return {"root": root, "api_base": f"{root}/api/v1"}


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- runs -----------------------------------------------------------------------------


def _utc_input(raw: str | None) -> int | None:
    """A ``datetime-local`` value (read as UTC) or a Unix time in ms, as ms."""
    if not raw:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return int(raw)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


@blueprint.get("/")
async def runs_page() -> Any:
    store = current_state().require_store()
    args = request.args
    notes: list[str] = []
    status = args.get("status") or None
    if status is not None and status not in RUN_STATUSES:
        notes.append(f"unknown status {status!r} ignored")
        status = None
    range_key = args.get("range") or ""
    if range_key and range_key not in RANGES:
        notes.append(f"unknown time range {range_key!r} ignored")
        range_key = ""
    now = _now_ms()
    created_after = _utc_input(args.get("from"))
    created_before = _utc_input(args.get("to"))
    if args.get("from") and created_after is None:
        notes.append("'from' is not a date and time; ignored")
    if args.get("to") and created_before is None:
        notes.append("'to' is not a date and time; ignored")
    if range_key:
        since = now - RANGES[range_key][1]
        created_after = since if created_after is None else max(created_after, since)
    try:
        limit = int(args.get("limit") or DEFAULT_RUNS_LIMIT)
    except ValueError:
        limit = DEFAULT_RUNS_LIMIT
    limit = min(max(limit, 1), MAX_LIST_LIMIT)
    filters = RunFilter(
        status=status,
        workflow=(args.get("workflow") or "").strip() or None,
        version=(args.get("version") or "").strip() or None,
        created_after=created_after,
        created_before=created_before,
        reference_id=(args.get("reference_id") or "").strip() or None,
        attributes=_attributes(args.get("attr") or "", notes),
    )
    cursor = args.get("cursor") or None
    try:
        page, next_cursor = await list_runs_page(store, filters, limit, cursor)
    except ApiError as exc:
        if exc.field != "cursor":
            raise
        notes.append("that page cursor is not valid; showing the newest runs")
        cursor = None
        page, next_cursor = await list_runs_page(store, filters, limit, None)
    workflows = await store.list_workflows()
    base = {k: args[k] for k in FILTER_ARGS if args.get(k)}
    return await render_template(
        "runs.html",
        page="runs",
        runs=[_run_row(r, now) for r in page],
        filters=filters,
        args=args,
        range_key=range_key,
        ranges=RANGES,
        statuses=RUN_STATUSES,
        workflow_names=sorted({w["workflow"] for w in workflows}),
        versions=sorted({w["version"] for w in workflows}),
        limit=limit,
        page_sizes=PAGE_SIZES,
        cursor=cursor,
        next_cursor=next_cursor,
        base_args=base,
        notes=notes,
        live=args.get("live") == "1",
        any_active=any(not r.ended for r in page),
        filtered=bool(status or filters.workflow or filters.version or range_key)
        or bool(filters.reference_id or filters.attributes)
        or bool(args.get("from") or args.get("to")),
    )


def _run_row(run: RunRecord, now: int) -> dict[str, Any]:
    end = run.ended_at if run.ended else now
    return {
        "id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "status": run.status,
        "attempts": run.attempts,
        "created_at": run.created_at,
        "duration_ms": (end - run.created_at) if run.created_at and end else None,
        "ended": run.ended,
        "error": readable(current_state().shown(run.error)),
        "reference_id": run.reference_id,
        "priority": run.priority,
        "attributes": run.attributes,
    }


def _attributes(raw: str, notes: list[str]) -> tuple[tuple[str, str], ...]:
    """The search form's attributes, ``name=value`` separated by spaces (all must
    match); a malformed or invalid one is named in a note and ignored."""
    kept: list[tuple[str, str]] = []
    for item in raw.split():
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ConfigurationError("expected name=value")
            RunQuery.build(attributes={name: value})
        except ConfigurationError as exc:
            notes.append(f"attribute {item!r} ignored: {exc}")
            continue
        kept.append((name, value))
    return tuple(kept)


@blueprint.get("/runs/<run_id>")
async def run_page(run_id: str) -> Any:
    state = current_state()
    run = await state.require_store().get_run(run_id, with_tasks=True)
    if run is None:
        return await html_error(404, f"no run with id {run_id!r}")
    now = _now_ms()
    data = readable(state.shown(run.to_json()))
    tasks = prepare_tasks(data.get("tasks"))
    start = run.created_at or min((t.get("started_at") or now for t in tasks), default=now)
    end = run.ended_at if run.ended and run.ended_at else now
    for t in tasks:
        end = max(end, t.get("ended_at") or 0, t.get("started_at") or 0)
    span = max(1, end - start)
    bars = [_bar("queued", "queue", start, run.started_at or end, start, span)]
    if run.started_at:
        bars.append(_bar("run", badge(run.status), run.started_at, end, start, span))
    for i, t in enumerate(tasks):
        t0 = t.get("started_at") or start
        t1 = t.get("ended_at") or (now if not run.ended else t0)
        bars.append(_bar(f"{i + 1}. {t['name']}", badge(t.get("status")), t0, t1, start, span))
    return await render_template(
        "run.html",
        page="runs",
        run=data,
        tasks=tasks,
        ended=run.ended,
        bars=bars,
        timeline=timeline(data, tasks),
        span_ms=span,
        terminal=sorted(TERMINAL_STATUSES),
    )


def _bar(label: str, css: str, t0: int, t1: int, start: int, span: int) -> dict[str, Any]:
    left = min(100.0, max(0.0, (t0 - start) * 100 / span))
    width = min(100.0 - left, max(0.4, (max(t1, t0) - t0) * 100 / span))
    return {
        "label": label,
        "css": css,
        "left": f"{left:.2f}",
        "width": f"{width:.2f}",
        "duration_ms": max(0, t1 - t0),
    }


# -- workflows: their schemas, and starting a run --------------------------------------


@blueprint.get("/workflows")
async def workflows_page() -> Any:
    store = current_state().require_store()
    return await render_template(
        "workflows.html", page="workflows", workflows=await store.list_workflows()
    )


@blueprint.get("/workflows/<workflow>/<version>")
async def start_page(workflow: str, version: str) -> Any:
    """A form (the payload schema's top-level fields) and a JSON editor to start a run;
    the page's script checks the payload against the schema, the API checks it again."""
    registration = await current_state().require_store().workflow_registration(workflow, version)
    if registration is None:
        return await html_error(404, f"no registered workflow {workflow!r} version {version!r}")
    return await render_template("start.html", page="workflows", w=registration)


# -- workers and schedules ------------------------------------------------------------


@blueprint.get("/workers")
async def workers_page() -> Any:
    store = current_state().require_store()
    workers = await list_workers(store)
    queues = await queue_stats(store)
    show_stale = request.args.get("stale") == "1"
    shown = [w for w in workers if show_stale or not w["stale"] or w["heartbeat_age_ms"] < 60_000]
    return await render_template(
        "workers.html",
        page="workers",
        workers=shown,
        hidden=len(workers) - len(shown),
        queues=queues,
        show_stale=show_stale,
    )


@blueprint.get("/schedules")
async def schedules_page() -> Any:
    state = current_state()
    schedules = await read_schedules(state.require_store())
    return await render_template(
        "schedules.html",
        page="schedules",
        schedules=[readable(state.shown(s)) for s in schedules],
    )


@blueprint.get("/dead-letters")
async def dead_letters_page() -> Any:
    store = current_state().require_store()
    cursor = request.args.get("cursor") or None
    if cursor is not None and not is_entry_id(cursor):
        raise ApiError(400, "bad_request", f"cursor must be a dead letter id, got {cursor!r}")
    letters, total = await store.list_dead_letters(limit=DEFAULT_RUNS_LIMIT + 1, before=cursor)
    page = letters[:DEFAULT_RUNS_LIMIT]
    return await render_template(
        "dead_letters.html",
        page="dead-letters",
        letters=[d.to_json() for d in page],
        total=total,
        next_cursor=page[-1].id if len(letters) > len(page) else None,
    )
