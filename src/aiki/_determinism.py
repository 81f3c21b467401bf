"""Non-determinism detection: the steps a replay asks for, checked against the history.

A run's history is its step records (task results, sleeps, event waits, child starts and
waits), each written with ``seq`` (its position in the workflow's call order) and ``par``
(1 when it was asked for while the workflow had other trio tasks alive: a nursery). On
replay the steps the code asks for must come in the recorded order:

* sequential steps (``par`` 0) one by one, each at its position;
* a block of consecutive parallel steps (``par`` 1) as a set: a nursery's branches
  start in an order trio does not promise, so only membership is checked there.

A recorded step the code does not ask for at its position, or another step asked for
there, is a :class:`aiki.NonDeterminismError`, raised *before* the requested step does
anything: a changed deploy never re-executes a recorded task under a new address.

Why ``par`` is judged from the trio task tree and not from timing: a replay answers
recorded steps without a checkpoint, so "was another step in flight" differs between
the first execution and a replay, while "is this a branch of a nursery" does not.

Runs recorded before steps carried ``par`` are not checked (their history cannot say
which steps were parallel); their later steps are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from ._errors import NonDeterminismError

# Record statuses that a replay answers from the history without doing anything.
RESOLVED = frozenset({"completed", "failed", "timed_out"})


class Diverged(BaseException):
    """Carries a NonDeterminismError out of workflow code.

    A BaseException so that workflow code's ``except Exception`` cannot swallow it (the
    context remembers the error too, so even ``except BaseException`` cannot hide it)."""

    def __init__(self, error: NonDeterminismError) -> None:
        self.error = error
        super().__init__(str(error))


class ReachedFrontier(BaseException):
    """``aiki.testing.replay``: the code reached the end of a history of a run that was
    still going (what follows would be new work, not replay)."""


def describe(address: str, record: Mapping[str, Any] | None = None) -> str:
    """A step, for people: ``task 'charge' (input 3fa9…)``, ``sleep 'cool-off'``."""
    kind = (record or {}).get("kind")
    head, _, rest = address.partition(":")
    if kind is None and head in ("sleep", "event", "child-wait") and rest:
        kind = head
    if kind in ("sleep", "event", "child-wait"):
        name, _, n = address[len(kind) + 1 :].rpartition(":")
        what = {"sleep": "sleep", "event": "wait for event", "child-wait": "wait for child"}
        ordinal = f" #{int(n) + 1}" if n.isdigit() and int(n) else ""
        return f"{what[kind]} {name!r}{ordinal}"
    name, digest, n = _split(address)
    ordinal = f" #{int(n) + 1}" if n.isdigit() and int(n) else ""
    if kind == "child" or (kind is None and name.startswith("child:") and "@" in name):
        return f"child workflow {name[len('child:') :]}{ordinal} (input {digest})"
    task = (record or {}).get("task") or name
    return f"task {task!r}{ordinal} (input {digest})"


def _split(address: str) -> tuple[str, str, str]:
    parts = address.rsplit(":", 2)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return address, "?", "0"


def is_branch(root: trio.lowlevel.Task | None) -> bool:
    """Is the calling code a parallel branch of the workflow: another trio task than the
    workflow's own, or the workflow's task while one of its nurseries has live tasks."""
    if root is None:
        return False
    task = trio.lowlevel.current_task()
    if task is not root:
        return True
    return any(nursery.child_tasks for nursery in task.child_nurseries)


class StepMatcher:
    """Checks the steps a replay asks for against a run's recorded steps, in order."""

    def __init__(
        self, run_id: str, memo: Mapping[str, Mapping[str, Any]], attempt: int = 1
    ) -> None:
        self._run_id = run_id
        self._attempt = attempt
        self._records = dict(memo)
        self.requested: set[str] = set()
        # Steps recorded by earlier workflow-level attempts are answered from the memo
        # wherever the code asks for them, without an order: a retry may take another
        # path (``ctx.attempt`` is there to branch on). Order is checked within an attempt.
        current = {a: r for a, r in memo.items() if int(r.get("att", 1)) >= attempt}
        steps = sorted((int(r.get("seq", 0)), a) for a, r in current.items())
        # Old records (no "par") cannot say which steps were parallel: no check.
        self.enabled = all("par" in r and "seq" in r for r in current.values())
        self._groups: list[tuple[bool, list[str]]] = []
        for _, address in steps:
            parallel = bool(memo[address].get("par"))
            if parallel and self._groups and self._groups[-1][0]:
                self._groups[-1][1].append(address)
            else:
                self._groups.append((parallel, [address]))
        self._group = 0
        self._left: set[str] = set(self._groups[0][1]) if self._groups else set()

    def pending(self) -> list[str]:
        """Recorded steps the code has not asked for yet (in recorded order)."""
        return [a for _, g in self._groups for a in g if a not in self.requested]

    def _advance(self) -> None:
        while not self._left and self._group < len(self._groups):
            self._group += 1
            if self._group < len(self._groups):
                self._left = {a for a in self._groups[self._group][1] if a not in self.requested}

    def check(self, position: int, address: str, parallel: bool) -> None:
        """The code asks for ``address`` as its ``position``-th step: raise
        NonDeterminismError unless the history has that step there (or has nothing
        more: a new step)."""
        self.requested.add(address)
        if not self.enabled:
            return
        self._advance()
        if self._group >= len(self._groups):
            return  # past the history: a new step
        if address in self._left:
            self._left.discard(address)
            self._advance()
            return
        recorded = self._records.get(address)
        if recorded is None:
            if parallel and self._groups[self._group][0]:
                return  # a branch of this block that was in flight, never recorded
        elif int(recorded.get("att", 1)) < self._attempt:
            return  # recorded by an earlier attempt: no order to check
        raise self.mismatch(position, address)

    def mismatch(self, position: int, address: str | None) -> NonDeterminismError:
        """The error for asking ``address`` (None: the code ended) where the history
        has another step."""
        left = sorted(self._left, key=lambda a: int(self._records[a].get("seq", 0)))
        if len(left) == 1 or not self._groups[self._group][0]:
            recorded = describe(left[0], self._records[left[0]])
        else:
            recorded = "one of " + ", ".join(describe(a, self._records[a]) for a in left)
        requested = None if address is None else describe(address)
        return NonDeterminismError(self._run_id, position, recorded, requested)

    def check_end(self, position: int) -> None:
        """The workflow returned: every recorded step must have been asked for."""
        if not self.enabled:
            return
        self._advance()
        if self._group < len(self._groups):
            raise self.mismatch(position, None)


def ends_in_divergence(exc: BaseException) -> bool:
    """Did workflow code end with a Diverged (perhaps in a nursery's exception group),
    and not with a cancellation (a stopping worker) that must propagate?"""
    if isinstance(exc, Diverged):
        return True
    if isinstance(exc, BaseExceptionGroup):
        if exc.subgroup((trio.Cancelled, KeyboardInterrupt, SystemExit)) is not None:
            return False
        return exc.subgroup(Diverged) is not None
    return False
