"""Checks of user settings at construction, each naming the setting at fault.

Why here and not where a value is used: a NaN compares False with everything, so
``x <= 0`` lets it through and it fails much later as a bare ValueError (or worse, a
Redis "value is not an integer" far from the call that set it). Checking once, when the
object is built, turns every such mistake into a ``ConfigurationError`` whose ``field``
and message name the setting.
"""

from __future__ import annotations

import math
from typing import Any

from ._errors import ConfigurationError


def seconds(owner: str, field: str, value: Any, *, zero_ok: bool = False) -> float:
    """``value`` as a finite number of seconds, > 0 (>= 0 with ``zero_ok``)."""
    bound = ">= 0" if zero_ok else "> 0"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero_ok)
    ):
        raise ConfigurationError(
            f"{owner}({field}=) must be a finite number of seconds {bound}, got {value!r}",
            field=field,
        )
    return float(value)


def integer(owner: str, field: str, value: Any, *, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (a bool, a float or a str is refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(
            f"{owner}({field}=) must be an integer >= {minimum}, got {value!r}", field=field
        )
    return value
