"""A started run's handle: follow it (status, wait for its outcome) and act on it
(cancel, pause, resume, wake, retry, send events), through its client's backend (Redis
directly, or the HTTP API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _serde
from ._errors import RunNotFound, WorkflowCancelled, WorkflowFailed
from ._store import RunRecord
from ._types import UNTYPED, PayloadType

if TYPE_CHECKING:
    from ._client import Client


class RunHandle:
    """A started run: its ``id``, and ways to follow it."""

    def __init__(
        self,
        client: Client,
        run_id: str,
        workflow: str,
        version: str,
        result_type: PayloadType = UNTYPED,
    ) -> None:
        self.client = client
        self.id = run_id
        self.workflow = workflow
        self.version = version
        self._result_type = result_type

    async def status(self) -> str:
        """The run's current status (``queued``, ``running``, ``completed``, ...)."""
        return (await self.describe()).status

    async def describe(self, *, with_tasks: bool = False) -> RunRecord:
        """The whole stored run, optionally with its task records."""
        return await self.client.get_run(self.id, with_tasks=with_tasks)

    async def wait_for_completion(self, timeout: float | None = None) -> Any:
        """Wait until the run ends and return its result.

        Raises WorkflowFailed (with the recorded type, message and traceback) or
        WorkflowCancelled, both :class:`aiki.RunDidNotComplete`, or WaitTimeout when
        ``timeout`` seconds pass first (the run goes on). The result is of the
        version's return annotation when the handle came from ``version.start`` (or
        ``get_handle(..., result_type=)``), else JSON.
        """
        outcome = await self.client._backend.wait(self.id, timeout)
        status = outcome.get("status")
        if status == "completed":
            result = self.client.codecs.unwrap(outcome.get("result"))
            return self._result_type.load(result, where="workflow result")
        if status == "failed":
            raise WorkflowFailed(self.id, self.client.codecs.open_error(outcome.get("error") or {}))
        if status == "cancelled":
            reason = self.client.codecs.open_error(outcome.get("error") or {}).get("message")
            raise WorkflowCancelled(self.id, reason)
        raise RunNotFound(self.id)

    async def cancel(self, reason: str = "cancelled") -> str:
        """Cancel the run (and its child runs); a running execution is interrupted.
        Returns the run's final status (an already ended run keeps its own)."""
        return await self.client._backend.cancel(self.id, reason)

    async def pause(self) -> str:
        """Stop the run from being picked up (a running execution is interrupted)."""
        return await self.client._backend.pause(self.id)

    async def resume(self) -> str:
        """Let a paused run go on from where it was."""
        return await self.client._backend.resume(self.id)

    async def wakeup(self, name: str) -> int:
        """End the durable sleep called ``name`` now. Returns how many sleeps were woken."""
        return await self.client._backend.wakeup(self.id, name)

    async def retry(self) -> str:
        """Run a failed or cancelled run again, keeping what it recorded: its completed
        tasks are not executed again (their results are replayed); the task that failed
        and everything after it run. The new execution is the run's next attempt (the
        ended one is kept in its ``errors``), and ``wait_for_completion`` waits for it.
        Returns the run's status (``queued``); raises :class:`aiki.InvalidState` for a
        run that is not failed or cancelled."""
        return await self.client._backend.retry(self.id)

    async def send_event(
        self, name: str, data: Any = None, *, reference_id: str | None = None
    ) -> bool:
        """Deliver the event ``name`` with ``data`` to the run (kept until it waits for
        it). With ``reference_id`` a repeated send is delivered once: returns False then."""
        _serde.dumps(data, what="event data")
        data = self.client.codecs.wrap(data)
        return await self.client._backend.send_event(self.id, name, data, reference_id)

    def __repr__(self) -> str:
        return f"<aiki.RunHandle {self.workflow}@{self.version} {self.id}>"
