"""How a Lua script is loaded and called: its file, its includes, and its ONE binding.

The scripts are files, one per transition, in ``lua/`` (package data): Lua is read and
linted as Lua (``luacheck``), not as Python strings glued from fragments. What several
scripts share is written once in ``lua/lib.lua``; a script's ``--- @include "lib"`` line
is replaced by it when the script is loaded (Redis EVAL has no includes). Scripts are
read once per process and called by SHA (``Lua``).

A binding (made with :func:`script`) is a frozen dataclass whose fields are the script's
KEYS then its ARGV, in order, by name; the bindings themselves are in ``_scripts.py``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from importlib import resources
from typing import Any, ClassVar, TypeVar, cast, dataclass_transform

from .._redis import Arg, Lua, Redis

_INCLUDE = re.compile(r'^--- @include "([a-z_]+)"$', re.MULTILINE)


def lua_text(name: str) -> str:
    """The file ``lua/<name>.lua`` as written."""
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def lua_source(name: str) -> str:
    """The script ``name`` as Redis runs it: its includes replaced by the files."""
    return _INCLUDE.sub(lambda m: lua_text(m.group(1)), lua_text(name))


class Binding:
    """A call of one script: its fields are the script's KEYS then its ARGV, by name."""

    LUA: ClassVar[Lua]
    KEYS: ClassVar[tuple[str, ...]]
    ARGV: ClassVar[tuple[str, ...]]

    def key_list(self) -> list[Arg]:
        return _values(self, self.KEYS)

    def arg_list(self) -> list[Arg]:
        return _values(self, self.ARGV)

    async def call(self, redis: Redis) -> Any:
        """Run the script (EVALSHA, loading it once if the server lacks it)."""
        return await redis.script(self.LUA, self.key_list(), self.arg_list())

    def evalsha(self) -> list[Arg]:
        """The EVALSHA command of this call, for a pipeline (the script must be loaded)."""
        keys = self.key_list()
        return ["EVALSHA", self.LUA.sha, str(len(keys)), *keys, *self.arg_list()]


def _values(binding: Binding, names: tuple[str, ...]) -> list[Arg]:
    out: list[Arg] = []
    for name in names:
        if name[0] == "*":
            out.extend(getattr(binding, name[1:]))
        else:
            out.append(getattr(binding, name))
    return out


B = TypeVar("B", bound=type[Binding])


@dataclass_transform(frozen_default=True)
def script(name: str) -> Callable[[B], B]:
    """Make the class a frozen dataclass bound to ``lua/<name>.lua``, after checking
    that its fields are exactly its KEYS then its ARGV."""

    def bind(cls: B) -> B:
        made: Any = dataclasses.dataclass(frozen=True, slots=True)(cls)
        fields = tuple(f.name for f in dataclasses.fields(made))
        declared = tuple(n.lstrip("*") for n in (*cls.KEYS, *cls.ARGV))
        if fields != declared:
            raise TypeError(f"{cls.__name__}: fields {fields} are not KEYS + ARGV {declared}")
        made.LUA = Lua(name, lua_source(name))
        return cast(B, made)

    return bind
