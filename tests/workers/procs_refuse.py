"""A workflow module that cannot be imported in a supervised worker child (its command
line has ``--supervisor-fd``), though the supervisor imports it fine: a child that fails
at start-up every time (tests/test_cli_processes.py)."""

import sys

if "--supervisor-fd" in sys.argv:
    raise RuntimeError("procs_refuse cannot be loaded in a worker child")

from workers.procs_flows import hold  # noqa: E402

__all__ = ["hold"]
