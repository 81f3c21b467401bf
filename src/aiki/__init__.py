"""Aiki for Python: durable workflows as plain trio code, on Redis.

The public API is exactly ``__all__``; everything else lives in private modules.
"""

from ._client import Client, RunHandle, client
from ._concurrency import Concurrency
from ._context import ChildHandle, WorkflowContext
from ._errors import (
    AikiError,
    CodecError,
    ConfigurationError,
    ConnectionFailed,
    EventTimeout,
    InvalidPayload,
    InvalidState,
    NonDeterminismError,
    NonRetryableError,
    PayloadTooLarge,
    RunConflict,
    RunDidNotComplete,
    RunNotFound,
    ServerError,
    TaskFailed,
    TaskTimeout,
    UnknownWorkflow,
    WaitTimeout,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowTimeout,
)
from ._log import RunContextFilter
from ._rate_limit import RateLimit
from ._retry import Retry
from ._schedules import Schedule
from ._store import RunPage, RunRecord
from ._task import Task, TaskContext, task, task_context
from ._worker import Worker, worker
from ._workflow import Workflow, WorkflowRegistry, WorkflowVersion, workflow
from .subscribers import RedisStreams

__version__ = "0.1.0"

__all__ = [
    "AikiError",
    "ChildHandle",
    "Client",
    "CodecError",
    "Concurrency",
    "ConfigurationError",
    "ConnectionFailed",
    "EventTimeout",
    "InvalidPayload",
    "InvalidState",
    "NonDeterminismError",
    "NonRetryableError",
    "PayloadTooLarge",
    "RateLimit",
    "RedisStreams",
    "Retry",
    "RunConflict",
    "RunContextFilter",
    "RunDidNotComplete",
    "RunHandle",
    "RunNotFound",
    "RunPage",
    "RunRecord",
    "Schedule",
    "ServerError",
    "Task",
    "TaskContext",
    "TaskFailed",
    "TaskTimeout",
    "UnknownWorkflow",
    "WaitTimeout",
    "Worker",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowContext",
    "WorkflowFailed",
    "WorkflowRegistry",
    "WorkflowTimeout",
    "WorkflowVersion",
    "client",
    "task",
    "task_context",
    "worker",
    "workflow",
]
