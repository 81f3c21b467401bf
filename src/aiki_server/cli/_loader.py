"""Find the workflows a worker runs: ``MODULE[:ATTR]``, imported like ``python -m``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import aiki

from ._base import CliError


def load_workflows(target: str) -> list[aiki.Workflow | aiki.WorkflowVersion]:
    """Import ``MODULE[:ATTR]`` (with the current directory importable) and return the
    workflows it names: ATTR may be a Workflow, a WorkflowVersion or a list of them;
    without ATTR, every Workflow defined at the module's top level."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise CliError(f"{target!r} is not MODULE[:ATTR]")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}") from None
    if attr:
        obj: Any = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise CliError(f"{module_name!r} has no attribute {attr!r}") from None
        items = list(obj) if isinstance(obj, list | tuple | set | frozenset) else [obj]
    else:
        items = [v for v in vars(module).values() if isinstance(v, aiki.Workflow)]
        if not items:
            raise CliError(f"module {module_name!r} defines no aiki.workflow(...); name one")
    for item in items:
        if not isinstance(item, aiki.Workflow | aiki.WorkflowVersion):
            raise CliError(
                f"{target} is not a workflow, a workflow version or a list of them "
                f"(found {type(item).__name__})"
            )
    if not items:
        raise CliError(f"{target} is an empty list of workflows")
    return items
