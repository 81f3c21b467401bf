"""How an execution ends without an outcome (a sleep, an event or child wait, a retry
delay). Its own module because the context, the child handle and the execution loop
all raise or catch it."""

from __future__ import annotations

__all__ = ["Suspend"]


class Suspend(BaseException):
    """Ends this execution without an outcome: the run waits (a timer) and resumes later.

    A BaseException so that workflow code's ``except Exception`` cannot swallow it."""

    def __init__(
        self,
        status: str,
        wake_at_ms: int | None,
        *,
        event: tuple[str, int] | None = None,
        child_id: str | None = None,
        sleep_address: str | None = None,
    ) -> None:
        self.sleep_address = sleep_address
        self.status = status
        self.wake_at_ms = wake_at_ms
        self.event = event
        self.child_id = child_id
        super().__init__(f"{status} until {wake_at_ms}")
