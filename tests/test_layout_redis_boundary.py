"""Only the store (``aiki._store``) and the Redis gateway (``aiki._redis``) talk to Redis.

Why: every Redis command the engine sends is part of the key schema's contract (which
keys, which slot, which script fences what). Kept in one package, the schema can change
in one place and every command is covered by the store's tests; a raw ``HSET`` in the
worker or the server is how schema knowledge leaks and drifts. Checked on the source
with the AST (nothing is imported here): outside ``src/aiki/_store/`` and
``src/aiki/_redis/``, no module calls a method named like the gateway's command
methods, on anything, and no module imports a Redis client library.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
GATEWAY = (SRC / "aiki" / "_store", SRC / "aiki" / "_redis")
REDIS_METHODS = frozenset(
    {"command", "script", "batch", "subscribe", "next_message", "load_script"}
)
REDIS_LIBRARIES = frozenset({"glide", "hiredis", "redis", "valkey"})


def _outside_gateway() -> list[Path]:
    return [
        path
        for path in sorted(SRC.rglob("*.py"))
        if not any(path.is_relative_to(inside) for inside in GATEWAY)
    ]


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    # Decorators are not Redis calls (``@cli.command()`` is click's).
    decorators = {
        id(d)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        for d in node.decorator_list
    }
    for node in ast.walk(tree):
        if id(node) in decorators:
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in REDIS_METHODS:
                found.append(f"line {node.lineno}: calls .{node.func.attr}(...)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in REDIS_LIBRARIES:
                    found.append(f"line {node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in REDIS_LIBRARIES:
                found.append(f"line {node.lineno}: imports from {node.module}")
    return found


def test_the_scan_sees_the_source() -> None:
    paths = _outside_gateway()
    assert any(p.name == "_worker.py" for p in paths)
    assert not any(p.is_relative_to(GATEWAY[0]) for p in paths)


def test_the_scan_catches_a_raw_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import glide\nfrom redis.asyncio import Redis\n"
        "async def f(store):\n    await store.redis.command('HSET', 'k', 'f', 'v')\n"
        "@cli.command()\ndef g():\n    sub.next_message()\n"
    )
    assert len(_violations(bad)) == 4


@pytest.mark.parametrize("path", _outside_gateway(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_redis_commands_outside_the_store(path: Path) -> None:
    assert _violations(path) == [], (
        f"{path.relative_to(SRC)} talks to Redis directly; move it into aiki._store"
    )
