"""Exceptions that cannot be printed (their ``__str__`` raises) still fail their task or
run with a clear record, as Python's own traceback module shows them; the worker goes
on. A user's exception class with a broken ``__str__`` must not make a run unrecordable."""

from __future__ import annotations

import pytest
from _helpers import running_worker

import aiki
from aiki._serde import error_record


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


@aiki.task("unprintable.raise")
async def raises_unprintable(n: int) -> int:
    raise Unprintable(n)


unprintable = aiki.workflow("unprintable")


@unprintable.v("in-task")
async def in_task(ctx: aiki.WorkflowContext, n: int) -> int:
    return await raises_unprintable.start(ctx, n)


@unprintable.v("in-workflow")
async def in_workflow(ctx: aiki.WorkflowContext, n: int) -> int:
    raise Unprintable(n)


def test_the_error_record_names_an_unprintable_exception() -> None:
    record = error_record(Unprintable(1))
    assert record["type"] == "Unprintable"
    assert record["message"] == "<exception str() failed: its __str__ raised RuntimeError>"
    assert "Unprintable" in record["traceback"]


@pytest.mark.parametrize("version", [in_task, in_workflow], ids=["in-task", "in-workflow"])
async def test_an_unprintable_exception_fails_the_run_cleanly(
    client: aiki.Client, version: aiki.WorkflowVersion
) -> None:
    async with running_worker(client, unprintable):
        handle = await version.start(client, 1)
        with pytest.raises(aiki.WorkflowFailed) as failed:
            await handle.wait_for_completion(timeout=20)
        assert failed.value.error_type == "Unprintable"
        # The worker still serves runs after it.
        again = await in_task.start(client, 2)
        with pytest.raises(aiki.WorkflowFailed):
            await again.wait_for_completion(timeout=20)
