"""The exceptions Aiki raises. One root, so ``except aiki.AikiError`` catches them all.

Hierarchy::

    AikiError
    ├── ConfigurationError        bad option or URL given to a client, worker or server
    ├── NonRetryableError         raised by user code: stop retrying at once (aiki._retry)
    ├── InvalidPayload            a payload/result that is not JSON (names what is wrong)
    ├── UnknownWorkflow           no such workflow name/version is registered
    ├── RunNotFound               no run with that id
    ├── RunConflict               a run with that reference id exists with another payload
    ├── InvalidState              the run cannot do that now (e.g. send an event to an ended run)
    ├── ConnectionFailed          Redis or the server could not be reached
    ├── ServerError               the server answered with an error (status + JSON body)
    ├── WaitTimeout               wait_for_completion(timeout=...) ran out
    ├── WorkflowFailed            the run ended `failed`; carries type, message, traceback
    ├── WorkflowCancelled         the run ended `cancelled`
    ├── TaskFailed                a task raised; what workflow code sees, on first run and replay
    ├── EventTimeout              ctx.wait_for_event(timeout=...) ran out before the event came
    └── WorkflowTimeout           the run outlived its workflow-level timeout (recorded as error)

Lower-level errors (valkey-glide, httpx) never escape the SDK: they are mapped to
``ConnectionFailed`` or ``ServerError`` at the boundary.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AikiError",
    "ConfigurationError",
    "ConnectionFailed",
    "InvalidPayload",
    "InvalidState",
    "RunConflict",
    "RunNotFound",
    "ServerError",
    "TaskFailed",
    "EventTimeout",
    "UnknownWorkflow",
    "WaitTimeout",
    "WorkflowTimeout",
    "WorkflowCancelled",
    "WorkflowFailed",
]


class AikiError(Exception):
    """Root of every exception raised by Aiki."""


class ConfigurationError(AikiError):
    """An option, URL or setting is invalid; the message names it."""


class InvalidPayload(AikiError, TypeError):
    """A payload or result cannot be stored as JSON; the message names the offending part."""


class UnknownWorkflow(AikiError):
    """No worker has registered this workflow name and version."""

    def __init__(self, workflow: str, version: str | None = None) -> None:
        self.workflow = workflow
        self.version = version
        what = f"{workflow!r} version {version!r}" if version else repr(workflow)
        super().__init__(f"unknown workflow {what}")


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


class WorkflowFailed(_RecordedError):
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


class WorkflowCancelled(AikiError):
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
