"""The exceptions Aiki raises. One root, so ``except aiki.AikiError`` catches them all.

Hierarchy::

    AikiError
    ├── ConfigurationError        bad option, URL or start argument (``field`` names it)
    ├── NonRetryableError         raised by user code: stop retrying at once
    ├── InvalidPayload            a payload/result that is not JSON (``field`` names it)
    │   └── PayloadTooLarge       a payload over the size limit (``size``, ``limit``)
    ├── CodecError                stored data cannot be decoded (a missing or wrong key)
    ├── UnknownWorkflow           no such workflow name/version is registered
    ├── RunNotFound               no run with that id
    ├── RunConflict               a run with that reference id exists with another payload
    ├── InvalidState              the run cannot do that now (e.g. send an event to an ended run)
    ├── ConnectionFailed          Redis or the server could not be reached
    ├── ServerError               the server answered with an error (status + JSON body)
    ├── WaitTimeout               wait_for_completion(timeout=...) ran out; the run goes on
    ├── RunDidNotComplete         the run ended without a result (wait_for_completion)
    │   ├── WorkflowFailed        ended `failed`; carries type, message, traceback
    │   └── WorkflowCancelled     ended `cancelled`; carries the reason
    ├── TaskFailed                a task raised; what workflow code sees, on first run and replay
    ├── EventTimeout              ctx.wait_for_event(timeout=...) ran out before the event came
    ├── WorkflowTimeout           the run outlived its workflow-level timeout
    ├── TaskTimeout               a task attempt ran past its timeout= or heartbeat_timeout=
    └── NonDeterminismError       a replay asked for other steps than the run recorded

``RunDidNotComplete`` is what to catch around ``handle.wait_for_completion()`` for "the
run is over and there is no result". ``WorkflowTimeout`` is not one of them on purpose:
it is raised inside the worker and *recorded* as the error of a run that ends ``failed``,
so a waiter sees ``WorkflowFailed`` with ``error_type == "WorkflowTimeout"``.
``WaitTimeout`` is not one either: the run has not ended, only the wait has.
``NonDeterminismError`` is, like ``WorkflowTimeout``, recorded as the error of a run that
ends ``failed`` (a waiter sees ``WorkflowFailed`` with ``error_type ==
"NonDeterminismError"``); ``aiki.testing.replay`` raises it directly.

Lower-level errors (valkey-glide, httpx) never escape the SDK: they are mapped to
``ConnectionFailed`` or ``ServerError`` at the boundary.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AikiError",
    "CodecError",
    "ConfigurationError",
    "ConnectionFailed",
    "EventTimeout",
    "InvalidPayload",
    "InvalidState",
    "NonDeterminismError",
    "NonRetryableError",
    "PayloadTooLarge",
    "RunConflict",
    "RunDidNotComplete",
    "RunNotFound",
    "ServerError",
    "TaskFailed",
    "TaskTimeout",
    "UnknownWorkflow",
    "WaitTimeout",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowTimeout",
]


class AikiError(Exception):
    """Root of every exception raised by Aiki."""


class ConfigurationError(AikiError):
    """An option, URL or setting is invalid; the message names it.

    ``field`` names the option or request field at fault when there is one (the HTTP API
    puts it in its JSON error body), so nobody has to guess it from the message."""

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class InvalidPayload(AikiError, TypeError):
    """A payload or result cannot be stored as JSON, or does not fit its annotated type;
    the message names the offending part and why.

    ``field`` names the request field or path at fault when known
    (``payload.order_data.items[0].quantity``); ``path`` is the path inside the value
    (``order_data.items[0].quantity``; empty for the value as a whole)."""

    def __init__(self, message: str = "", *, field: str | None = None, path: str = "") -> None:
        self.field = field
        self.path = path
        super().__init__(message)


class CodecError(AikiError):
    """Stored data cannot be decoded by this client's codecs (``aiki.codecs``): a key id
    this process does not have, the wrong key, tampered data, or a codec not set here.
    The message names the key id, never a key."""


class PayloadTooLarge(InvalidPayload):
    """A payload is larger, as compact JSON in UTF-8, than the limit (``size`` and
    ``limit`` in bytes). The HTTP API answers it with 413 rather than 422."""

    def __init__(self, size: int, limit: int, *, field: str | None = "payload") -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{field or 'payload'} is {size} bytes as compact JSON; the limit is {limit}",
            field=field,
        )


class NonRetryableError(AikiError):
    """Raise this (or a subclass) from a task or workflow to stop retrying at once."""


class UnknownWorkflow(AikiError):
    """No worker has registered this workflow name and version.

    ``known_versions`` lists the versions of that workflow that are registered, when the
    start looked them up (an empty list: no version at all); ``field`` names what is
    unknown, ``"version"`` or ``"workflow"``."""

    def __init__(
        self,
        workflow: str,
        version: str | None = None,
        *,
        known_versions: list[str] | None = None,
    ) -> None:
        self.workflow = workflow
        self.version = version
        self.known_versions = known_versions
        self.field = "version" if known_versions else "workflow"
        if known_versions:
            message = (
                f"workflow {workflow!r} has no version {version!r} "
                f"(known versions: {', '.join(known_versions)})"
            )
        elif known_versions is not None:
            message = f"unknown workflow {workflow!r}: no worker has registered it"
        else:
            what = f"{workflow!r} version {version!r}" if version else repr(workflow)
            message = f"unknown workflow {what}"
        super().__init__(message)


class RunNotFound(AikiError):
    """No run with this id exists (it never did, or its retention expired)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}")


class RunConflict(AikiError):
    """A run with this reference id already exists with a different payload."""

    def __init__(self, workflow: str, reference_id: str, detail: str = "") -> None:
        self.workflow = workflow
        self.reference_id = reference_id
        super().__init__(
            detail
            or f"workflow {workflow!r} already has a run with reference id "
            f"{reference_id!r} and a different payload"
        )


class InvalidState(AikiError):
    """The run is in a state that does not allow this (the message says which)."""


class ConnectionFailed(AikiError):
    """Redis or the Aiki server could not be reached."""


class ServerError(AikiError):
    """The Aiki server answered with an error status."""

    def __init__(self, status_code: int, body: Any) -> None:
        self.status_code = status_code
        self.body = body
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
        super().__init__(f"server answered {status_code}: {message or body!r}")


class WaitTimeout(AikiError, TimeoutError):
    """``wait_for_completion(timeout=...)`` ran out before the run ended."""

    def __init__(self, run_id: str, timeout: float, status: str | None = None) -> None:
        self.run_id = run_id
        self.timeout = timeout
        self.status = status
        super().__init__(f"run {run_id} did not end within {timeout:g} s (status: {status})")


class _RecordedError(AikiError):
    """An error recorded in a run: the original exception's type, message and traceback."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        error_message: str,
        traceback: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        self.details = details or {}
        super().__init__(message)

    def __str__(self) -> str:
        text = super().__str__()
        if self.traceback:
            text += "\n\nRecorded traceback:\n" + self.traceback.rstrip()
        return text


class RunDidNotComplete(AikiError):
    """The run ended, but not ``completed``: there is no result. Catch this around
    ``wait_for_completion`` for "failed or cancelled" (see the subclasses)."""

    run_id: str


class WorkflowFailed(_RecordedError, RunDidNotComplete):
    """The run ended ``failed``. ``error_type``, ``error_message`` and ``traceback`` say why."""

    def __init__(self, run_id: str, error: dict[str, Any]) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id} failed: {error.get('type')}: {error.get('message')}",
            error_type=str(error.get("type")),
            error_message=str(error.get("message")),
            traceback=error.get("traceback"),
            details=error,
        )


class WorkflowCancelled(RunDidNotComplete):
    """The run ended ``cancelled``."""

    def __init__(self, run_id: str, reason: str | None = None) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"run {run_id} was cancelled" + (f": {reason}" if reason else ""))


class TaskFailed(_RecordedError):
    """A task raised. Workflow code sees this both when the task runs and on replay,
    so a workflow that catches it behaves the same way every time."""

    def __init__(self, task: str, error: dict[str, Any]) -> None:
        self.task = task
        super().__init__(
            f"task {task!r} failed: {error.get('type')}: {error.get('message')}",
            error_type=str(error.get("type")),
            error_message=str(error.get("message")),
            traceback=error.get("traceback"),
            details=error,
        )


class EventTimeout(AikiError, TimeoutError):
    """``ctx.wait_for_event(name, timeout=...)`` ran out before the event arrived.

    Raised the same way on every replay of the run."""

    def __init__(self, name: str, timeout: float | None) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"event {name!r} did not arrive within {timeout:g} s")


class WorkflowTimeout(AikiError, TimeoutError):
    """The run outlived the ``timeout=`` of its workflow version; it ends ``failed``."""

    def __init__(self, timeout_ms: int | None) -> None:
        self.timeout = (timeout_ms or 0) / 1000
        super().__init__(f"workflow timed out after {self.timeout:g} s")


class TaskTimeout(AikiError, TimeoutError):
    """A task attempt ran longer than its ``timeout=`` (``kind == "timeout"``) or went
    ``heartbeat_timeout=`` seconds without a heartbeat (``kind == "heartbeat"``).

    The attempt was cancelled; this is the attempt's recorded error and counts under the
    task's retry policy like any failure (workflow code sees ``TaskFailed`` with
    ``error_type == "TaskTimeout"`` once no retry is left)."""

    def __init__(self, task: str, seconds: float, kind: str = "timeout") -> None:
        self.task = task
        self.seconds = seconds
        self.kind = kind
        what = "ran past its timeout" if kind == "timeout" else "sent no heartbeat"
        super().__init__(f"task {task!r} {what} of {seconds:g} s")


class NonDeterminismError(AikiError):
    """The workflow code asked for other steps than the run recorded (a deploy changed the
    code under a run in flight, or the code is not deterministic).

    ``position`` is the step's index in the run (0-based, in call order), ``recorded``
    describes the step the run recorded there (``None``: the run recorded nothing more)
    and ``requested`` the step the code asks for (``None``: the code ended there).
    Raised before the requested step does anything: no task runs again."""

    def __init__(
        self,
        run_id: str,
        position: int,
        recorded: str | None,
        requested: str | None,
    ) -> None:
        self.run_id = run_id
        self.position = position
        self.recorded = recorded
        self.requested = requested
        super().__init__(
            f"run {run_id}: workflow code is not deterministic at step {position + 1}: "
            f"the run recorded {recorded or 'no further step'}, "
            f"but the code {'asks for ' + requested if requested else 'ended there'}"
        )
