"""One start path: what makes a start valid, and how a run is started, written once.

Why one module: a run is started by the client (``workflow_version.start``, straight
into Redis), by ``start_many`` and by the HTTP API (``POST /api/v1/runs``, for callers
that have no code for the workflow). They must accept and refuse the same things with
the same messages, choose run ids the same way (a reference id decides the shard, so a
repeated start meets the first one) and apply the same conflict policy. So:

* :class:`StartRequest` is a validated start. :meth:`StartRequest.build` is its only
  validating constructor: the payload is encoded to compact JSON and checked against the
  size limit, ``reference_id``, ``on_conflict``, ``delay``/``start_at``/``start_at_ms``,
  ``timeout``, ``sensitive``, ``priority`` and ``shards`` are checked. A refusal raises
  :class:`ConfigurationError` or :class:`InvalidPayload` (:class:`PayloadTooLarge` for
  the limit) whose ``field`` names the argument at fault, which the HTTP API reports.
* :func:`start_run` starts one: it chooses the run id, calls the store's start script
  (retried through a Redis outage for ``retry_for`` seconds), and applies the conflict
  policy. With ``registered=True`` (the HTTP API) the version's registration decides its
  shards and default timeout, and an unregistered version raises :class:`UnknownWorkflow`
  listing the known versions.
* :func:`start_runs` starts many runs of one version in one round trip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from . import _serde, _tracing
from ._backoff import retrying
from ._concurrency import MAX_LIMIT, check_key
from ._errors import ConfigurationError, InvalidPayload, UnknownWorkflow
from ._notify import RunEndedListener
from ._redis import ScriptRefused
from ._store import Store, choose_run_id

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "MAX_MS",
    "MAX_PRIORITY",
    "MAX_SECONDS",
    "START_RETRY_FOR",
    "StartOutcome",
    "StartRequest",
    "aware_ms",
    "check_priority",
    "encode_payload",
    "json_type",
    "start_run",
    "start_runs",
]

DEFAULT_MAX_PAYLOAD_BYTES = 1_000_000
#: Largest time in ms accepted anywhere (the end of year 9999 UTC).
MAX_MS = 253_402_300_799_999
#: Largest number of seconds accepted for a run timeout (10 years).
MAX_SECONDS = 315_360_000
#: Priorities: an int from 0 (the default: no priority) to MAX_PRIORITY; a waiting run
#: with a higher one is taken first (docs/flow-control.md#priorities).
MAX_PRIORITY = 100
#: How long a start keeps retrying while Redis cannot be reached (a restart, a failover).
START_RETRY_FOR = 30.0

OnConflict = Literal["error", "return_existing"]
CheckRegistration = Callable[[dict[str, Any]], None]
ON_CONFLICT: tuple[OnConflict, ...] = ("error", "return_existing")


def json_type(value: Any) -> str:
    """What ``value`` is, in JSON's words (messages are read by HTTP callers too)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "an empty string" if not value else "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def encode_payload(payload: Any, max_payload_bytes: int, *, field: str = "payload") -> str:
    """``payload`` as compact JSON, or InvalidPayload (not JSON) / PayloadTooLarge."""
    try:
        payload_json = _serde.dumps(payload, what=field)
    except InvalidPayload as exc:
        raise InvalidPayload(str(exc), field=field) from None
    return _serde.check_size(payload_json, max_payload_bytes, field)


def aware_ms(when: datetime, field: str) -> int:
    """``when`` (a timezone-aware datetime) as Unix ms, or ConfigurationError naming
    ``field``: a naive datetime means different times on different machines."""
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise ConfigurationError(f"{field} must be a timezone-aware datetime", field=field)
    return int(when.timestamp() * 1000)


def check_priority(priority: Any) -> int:
    """``priority`` if it is an int from 0 to MAX_PRIORITY, else ConfigurationError
    naming ``priority`` (a bool, a float, a string are refused: 1.5 or "high" would
    have to be guessed at)."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        got = repr(priority) if isinstance(priority, float) else json_type(priority)
        raise ConfigurationError(
            f"priority must be an integer from 0 to {MAX_PRIORITY}, got {got}",
            field="priority",
        )
    if not 0 <= priority <= MAX_PRIORITY:
        raise ConfigurationError(
            f"priority must be an integer from 0 to {MAX_PRIORITY}, got {priority}",
            field="priority",
        )
    return priority


def _start_at_ms(
    delay: float | None, start_at: datetime | None, start_at_ms: int | None
) -> tuple[int | None, int | None]:
    """``(start_at_ms, start_delay_ms)``: a ``delay`` stays relative, so that Redis's
    clock (not this machine's, and a test environment's virtual one) decides when."""
    options = {"delay": delay, "start_at": start_at, "start_at_ms": start_at_ms}
    given = [name for name, value in options.items() if value is not None]
    if len(given) > 1:
        raise ConfigurationError(f"give {given[0]}= or {given[1]}=, not both", field=given[1])
    if delay is not None:
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not math.isfinite(delay)
            or delay < 0
        ):
            raise ConfigurationError("delay must be >= 0 seconds", field="delay")
        if delay > MAX_SECONDS:
            raise ConfigurationError(f"delay must be <= {MAX_SECONDS} seconds", field="delay")
        return None, int(delay * 1000)
    elif start_at is not None:
        start_at_ms = aware_ms(start_at, "start_at")
    if start_at_ms is not None and (
        not isinstance(start_at_ms, int)
        or isinstance(start_at_ms, bool)
        or not 0 <= start_at_ms <= MAX_MS
    ):
        raise ConfigurationError(
            f"start_at_ms must be a Unix time in milliseconds (an integer in 0..{MAX_MS}) "
            f"or null, got {json_type(start_at_ms)}",
            field="start_at_ms",
        )
    return start_at_ms, None


@dataclass(frozen=True)
class StartRequest:
    """A validated start of one run. Make it with :meth:`build`, which checks everything;
    the fields are what the store's start script takes."""

    workflow: str
    version: str
    payload_json: str
    reference_id: str | None = None
    on_conflict: OnConflict = "error"
    start_at_ms: int | None = None
    start_delay_ms: int | None = None
    timeout: float | None = None
    sensitive: bool = False
    shards: int = 1
    #: The run's concurrency key ("" = its version's one shared key) and the version's
    #: limit; both None for a version without ``concurrency=`` (see aiki._concurrency).
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    #: With a reference id and a payload stored through codecs: the plaintext's digests
    #: that a repeated start compares ("" = the stored payload's SHA-1; see start_run.lua).
    digests: str = ""
    priority: int = 0

    @classmethod
    def build(
        cls,
        workflow: str,
        version: str,
        payload: Any = None,
        *,
        reference_id: str | None = None,
        on_conflict: str = "error",
        delay: float | None = None,
        start_at: datetime | None = None,
        start_at_ms: int | None = None,
        timeout: float | None = None,
        sensitive: bool = False,
        shards: int = 1,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        concurrency_key: str | None = None,
        concurrency_limit: int | None = None,
        priority: int = 0,
    ) -> StartRequest:
        """Validate a start and encode its payload. ``delay`` (seconds from now),
        ``start_at`` (an aware datetime) and ``start_at_ms`` (Unix ms) are three ways to
        say when; give at most one. Raises ConfigurationError / InvalidPayload with
        ``field`` set to the argument at fault."""
        for name, value in (("workflow", workflow), ("version", version)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(
                    f"{name} must be a non-empty string, got {json_type(value)}", field=name
                )
        if reference_id is not None and (not isinstance(reference_id, str) or not reference_id):
            raise ConfigurationError(
                f"reference_id must be a non-empty string or null, got {json_type(reference_id)}",
                field="reference_id",
            )
        if on_conflict not in ON_CONFLICT:
            raise ConfigurationError(
                f"on_conflict must be 'error' or 'return_existing', got {on_conflict!r}",
                field="on_conflict",
            )
        when, delay_ms = _start_at_ms(delay, start_at, start_at_ms)
        if timeout is not None and (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not math.isfinite(timeout)
            or not 0 < timeout <= MAX_SECONDS
        ):
            raise ConfigurationError(
                f"timeout must be a number of seconds > 0 and <= {MAX_SECONDS}, or null",
                field="timeout",
            )
        if not isinstance(sensitive, bool):
            raise ConfigurationError("sensitive must be true or false", field="sensitive")
        if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= 256:
            raise ConfigurationError(
                f"shards must be a whole number from 1 to 256, got {shards!r}", field="shards"
            )
        _check_concurrency(workflow, version, concurrency_key, concurrency_limit)
        priority = check_priority(priority)
        return cls(
            workflow=workflow,
            version=version,
            payload_json=encode_payload(payload, max_payload_bytes),
            reference_id=reference_id,
            on_conflict=on_conflict,  # checked above
            start_at_ms=when,
            start_delay_ms=delay_ms,
            timeout=None if timeout is None else float(timeout),
            sensitive=sensitive,
            shards=shards,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            priority=priority,
        )


def _check_concurrency(workflow: str, version: str, key: Any, limit: Any) -> None:
    """A start's concurrency: a limit (int >= 1) with a key ("" for the version's shared
    one), or neither; or (an HTTP start, which learns the limit from the version's
    registration) a key alone."""
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT
    ):
        raise ConfigurationError(
            f"concurrency limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}",
            field="concurrency_limit",
        )
    if key is not None and (key != "" or limit is None):
        check_key(key, f"workflow {workflow!r} version {version!r}")


def _no_limit(request: StartRequest) -> ConfigurationError:
    return ConfigurationError(
        f"workflow {request.workflow!r} version {request.version!r} declares no "
        "concurrency limit: concurrency_key has no effect",
        field="concurrency_key",
    )


def _registered_concurrency(request: StartRequest, declared: Any) -> StartRequest:
    """``request`` with the concurrency its version registered: the limit, and the key
    given (else the version-wide one). A version whose keys come from a function in
    worker code needs the key named here; a version without a limit takes no key."""
    if not isinstance(declared, dict) or not declared.get("limit"):
        if request.concurrency_key is not None:
            raise _no_limit(request)
        return replace(request, concurrency_limit=None)
    key = request.concurrency_key
    if key is None:
        if declared.get("key_function"):
            raise ConfigurationError(
                f"workflow {request.workflow!r} version {request.version!r} computes its "
                "concurrency key from the payload in worker code: give concurrency_key",
                field="concurrency_key",
            )
        key = ""
    return replace(request, concurrency_key=key, concurrency_limit=int(declared["limit"]))


@dataclass(frozen=True)
class StartOutcome:
    """What a start did: the run's id, and whether this start created it (False: an
    earlier run with the same reference id was returned)."""

    run_id: str
    created: bool
    request: StartRequest


async def registered_request(
    store: Store, request: StartRequest, check: CheckRegistration | None = None
) -> StartRequest:
    """``request`` with the registered version's shards and (unless it has its own) its
    timeout; UnknownWorkflow, listing the known versions, if no worker registered it.
    ``check(registration)`` may refuse the start (the HTTP API validates the payload
    against the registered input schema there: InvalidPayload naming the field)."""
    registration = await store.workflow_registration(request.workflow, request.version)
    if registration is None:
        known = [
            w["version"] for w in await store.list_workflows() if w["workflow"] == request.workflow
        ]
        raise UnknownWorkflow(request.workflow, request.version, known_versions=known)
    if check is not None:
        check(registration)
    timeout = request.timeout
    if timeout is None and registration.get("timeout"):
        timeout = float(registration["timeout"])  # the version's own, as its worker said
    request = _registered_concurrency(request, registration.get("concurrency"))
    return replace(request, timeout=timeout, shards=int(registration.get("shards") or 1))


async def start_run(
    store: Store,
    request: StartRequest,
    *,
    registered: bool = False,
    listener: RunEndedListener | None = None,
    retry_for: float = START_RETRY_FOR,
    check: CheckRegistration | None = None,
) -> StartOutcome:
    """Start ``request``'s run; raises RunConflict per ``request.on_conflict``.

    ``registered=True``: the caller has no code for the version (the HTTP API): see
    :func:`registered_request`. ``listener``: watch the run before it exists, so its end
    cannot be missed however fast it is. A Redis outage is retried for ``retry_for``
    seconds (0: not at all); that is safe because the run id is chosen before the first
    try, so a retry of a start that did apply (its reply was lost) finds that run
    (``EXISTS``, or its reference id) instead of creating a second one."""
    if registered:
        request = await registered_request(store, request, check)
    elif request.concurrency_key is not None and request.concurrency_limit is None:
        raise _no_limit(request)
    run_id = choose_run_id(
        request.workflow,
        request.shards,
        reference_id=request.reference_id,
        concurrency_key=request.concurrency_key,
    )
    with _tracing.start_span(request.workflow, request.version) as span:
        if span is not None:
            span.set_attribute("aiki.run.id", run_id)
        outcome = await _start_one(store, request, run_id, listener, retry_for)
        if span is not None and not outcome.created:
            span.set_attribute("aiki.run.id", outcome.run_id)  # the existing run
            span.add_event("aiki.existing_run")
        return outcome


async def _start_one(
    store: Store,
    request: StartRequest,
    run_id: str,
    listener: RunEndedListener | None,
    retry_for: float,
) -> StartOutcome:
    trace = _tracing.trace_carrier()
    attempts = 0

    async def attempt() -> str:
        nonlocal attempts
        attempts += 1
        try:
            return await store.start_run(
                request.workflow,
                request.version,
                request.payload_json,
                run_id=run_id,
                reference_id=request.reference_id,
                on_conflict=request.on_conflict,
                start_at_ms=request.start_at_ms,
                start_delay_ms=request.start_delay_ms,
                timeout=request.timeout,
                sensitive=request.sensitive,
                priority=request.priority,
                trace=trace,
                concurrency_key=request.concurrency_key,
                concurrency_limit=request.concurrency_limit,
                digests=request.digests,
            )
        except ScriptRefused as refused:
            if attempts > 1 and refused.code == "EXISTS":
                # Our own earlier try created it (its reply, or its fsync wait, was lost).
                await store.acknowledged()
                return run_id
            raise

    if listener is not None:
        listener.watch(run_id)
    try:
        started = await retrying(attempt, retry_for=retry_for)
    except BaseException:
        if listener is not None:
            listener.forget(run_id)
        raise
    if started != run_id and listener is not None:  # an existing run with this reference
        listener.forget(run_id)
    return StartOutcome(started, started == run_id, request)


async def start_runs(
    store: Store,
    requests: Sequence[StartRequest],
    *,
    listener: RunEndedListener | None = None,
) -> list[str]:
    """Start one run per request in ONE round trip (a pipeline of start scripts); the
    requests are of one version (its workflow, version, timeout, shards and priority
    are the first's) without reference ids or start times. Returns the run ids, in order."""
    if not requests:
        return []
    first = requests[0]
    for r in requests:
        if (r.workflow, r.version, r.timeout, r.shards, r.concurrency_limit, r.priority) != (
            first.workflow,
            first.version,
            first.timeout,
            first.shards,
            first.concurrency_limit,
            first.priority,
        ) or (r.reference_id, r.start_at_ms, r.start_delay_ms, r.sensitive) != (
            None,
            None,
            None,
            False,
        ):
            raise ConfigurationError("start_runs takes plain starts of one version")
    items = [
        (
            choose_run_id(first.workflow, first.shards, concurrency_key=r.concurrency_key),
            r.payload_json,
            r.concurrency_key,
        )
        for r in requests
    ]
    if listener is not None:
        for run_id, *_ in items:  # watched before they exist, as for start_run
            listener.watch(run_id)
    try:
        with _tracing.start_span(first.workflow, first.version) as span:
            if span is not None:
                span.set_attribute("aiki.runs", len(items))
            await store.start_runs(
                first.workflow,
                first.version,
                items,
                timeout=first.timeout,
                priority=first.priority,
                trace=_tracing.trace_carrier(),
                concurrency_limit=first.concurrency_limit,
            )
    except BaseException:
        if listener is not None:
            for run_id, *_ in items:
                listener.forget(run_id)
        raise
    return [run_id for run_id, *_ in items]
