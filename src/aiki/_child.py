"""Child runs seen from their parent: :class:`ChildHandle` (``start_as_child``).

Waiting for a child is a memoized step of the parent like a task: the parent suspends
(``awaiting_child_workflow``, no worker slot) and the child's end requeues it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import RunNotFound, WorkflowCancelled, WorkflowFailed
from ._suspend import Suspend
from ._types import UNTYPED, PayloadType

if TYPE_CHECKING:
    from ._context import WorkflowContext

__all__ = ["ChildHandle"]


class ChildHandle:
    """A child run started with ``version.start_as_child(ctx, payload)``."""

    def __init__(
        self,
        ctx: WorkflowContext,
        run_id: str,
        workflow: str,
        version: str,
        result_type: PayloadType = UNTYPED,
    ) -> None:
        self._ctx = ctx
        self.id = run_id
        self.workflow = workflow
        self.version = version
        self._result_type = result_type

    async def wait_for_completion(self) -> Any:
        """Wait durably for the child to end: the parent is ``awaiting_child_workflow``
        (holding no worker slot) and resumes when the child ends. Returns the child's
        result (as the child version's return annotation), or raises WorkflowFailed /
        WorkflowCancelled as the child ended."""
        ctx = self._ctx
        address = ctx._named_address("child-wait", self.id)
        recorded = ctx._memo.get(address)
        if recorded is None:
            assert ctx._get_run is not None
            run = await ctx._get_run(self.id)
            if run is None:
                # Its record is gone (retention expired it, or Redis lost its start):
                # waiting would never end, so the wait fails, the same on every replay.
                now = ctx.now_ms()
                await ctx._record(
                    address,
                    {
                        "kind": "child-wait",
                        "status": "completed",
                        "child_id": self.id,
                        "child_status": "missing",
                        "started_at": now,
                        "ended_at": now,
                    },
                )
                raise RunNotFound(self.id)
            if not run.ended:
                raise Suspend("awaiting_child_workflow", None, child_id=self.id)
            now = ctx.now_ms()
            recorded = {
                "kind": "child-wait",
                "status": "completed",
                "child_id": self.id,
                "child_status": run.status,
                "result": run.result,
                "error": run.error,
                "started_at": now,
                "ended_at": now,
            }
            await ctx._record(address, recorded)
        if recorded["child_status"] == "missing":
            raise RunNotFound(self.id)
        if recorded["child_status"] == "completed":
            result = ctx._codecs.unwrap(recorded.get("result"))
            return self._result_type.load(result, where="child result")
        error = ctx._codecs.open_error(recorded.get("error") or {})
        if recorded["child_status"] == "cancelled":
            raise WorkflowCancelled(self.id, error.get("message"))
        raise WorkflowFailed(self.id, error)
