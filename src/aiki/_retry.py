"""Retry policies for tasks and workflows (``aiki.Retry``), in float seconds.

A policy answers one question: after attempt ``n`` failed, retry or not, and after how
long? Short delays are waited out in the worker; longer ones park the run as
``awaiting_retry`` with a durable timer, so no worker slot sleeps.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from ._checks import integer, seconds
from ._errors import ConfigurationError, NonRetryableError

Strategy = Literal["never", "fixed", "exponential", "jittered"]


@dataclass(frozen=True)
class Retry:
    """How often, and how long apart, a failing task or workflow is tried.

    ``max_attempts`` counts the first attempt too (``max_attempts=3``: two retries).
    ``exponential``: ``base_delay * factor ** (n - 1)``, capped at ``max_delay``.
    ``jittered``: a uniformly random delay between 0 and the exponential one ("full
    jitter"), which spreads retries of many runs apart.
    """

    strategy: Strategy = "never"
    max_attempts: int = 1
    base_delay: float = 1.0
    max_delay: float = 300.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.strategy not in ("never", "fixed", "exponential", "jittered"):
            raise ConfigurationError(f"unknown retry strategy {self.strategy!r}")
        integer("Retry", "max_attempts", self.max_attempts, minimum=1)
        for name in ("base_delay", "max_delay"):
            seconds("Retry", name, getattr(self, name), zero_ok=True)
        factor = self.factor
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not factor >= 1:
            raise ConfigurationError(f"Retry(factor=) must be >= 1, got {factor!r}", field="factor")
        if math.isinf(factor):
            raise ConfigurationError("Retry(factor=) must be finite", field="factor")

    @classmethod
    def never(cls) -> Retry:
        return cls("never", 1)

    @classmethod
    def fixed(cls, max_attempts: int, delay: float) -> Retry:
        return cls("fixed", max_attempts, delay, delay)

    @classmethod
    def exponential(
        cls,
        max_attempts: int,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        factor: float = 2.0,
    ) -> Retry:
        return cls("exponential", max_attempts, base_delay, max_delay, factor)

    @classmethod
    def jittered(
        cls,
        max_attempts: int,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        factor: float = 2.0,
    ) -> Retry:
        return cls("jittered", max_attempts, base_delay, max_delay, factor)

    def should_retry(self, failed_attempt: int, error: BaseException | None = None) -> bool:
        """Whether attempt number ``failed_attempt`` (1-based) may be followed by another."""
        if self.strategy == "never" or isinstance(error, NonRetryableError):
            return False
        return failed_attempt < self.max_attempts

    def delay(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        if self.strategy == "fixed":
            return self.base_delay
        exp = min(self.max_delay, self.base_delay * self.factor ** (failed_attempt - 1))
        if self.strategy == "jittered":
            return (rng or random).uniform(0.0, exp)
        return exp
