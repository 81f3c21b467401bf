"""The ``aiki`` command line: run a server, a dev stack or a worker; operate runs.

``aiki server`` and ``aiki dev`` serve the HTTP API and the dashboard; ``aiki worker
MODULE:ATTR`` runs a worker for your workflows; ``aiki runs``, ``aiki schedules``,
``aiki dead-letters`` and ``aiki workers`` talk to a server over HTTP (human tables by
default, ``--json`` for scripts). This is the only place in Aiki that installs signal
handlers: SIGINT/SIGTERM stop a server or worker gracefully, a second signal stops it at
once. Errors are one line on stderr with exit code 1 (usage errors: click's message,
exit code 2).

Layout: ``_base`` (the group, errors, runner, options), ``_signals`` (the one signal
helper), ``_serving`` (server, dev), ``_worker`` and ``_loader`` (worker), ``_supervisor``
(``aiki worker --processes N``: worker processes under one supervisor), ``_api`` (the
SDK's HttpApi for operator commands), ``_runs`` (look at runs, control them),
``_runs_act`` (start, event, wakeup, retry), ``_dead_letters``, ``_schedules``,
``_workers`` (operator commands) and ``_format`` (what they print).
"""

from __future__ import annotations

from collections.abc import Sequence

# Importing the command modules registers their commands on the group.
from . import (  # noqa: F401
    _dead_letters,
    _runs,
    _runs_act,
    _schedules,
    _serving,
    _worker,
    _workers,
)
from ._base import CliError, cli
from ._loader import load_workflows

__all__ = ["CliError", "cli", "load_workflows", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """The ``aiki`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="aiki")
