"""The Aiki server as a subprocess: ``python -m benchmarks._server_proc --redis-url URL --port P``.

Exits with status 3 and a line ``UNAVAILABLE <reason>`` when ``aiki_server`` cannot be
imported or configured (the server is built alongside the SDK and may not be there
yet). Otherwise serves until a ``stop`` line (or end of file) arrives on stdin.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from functools import partial
from typing import Any

import trio

from ._common import wait_for_stop

UNAVAILABLE = 3


def _settings(settings_cls: Any, redis_url: str, port: int) -> Any:
    """Build ``Settings`` from whichever of the usual field names it has."""
    wanted = {
        "redis_url": redis_url,
        "host": "127.0.0.1",
        "bind": f"127.0.0.1:{port}",
        "port": port,
    }
    params = inspect.signature(settings_cls).parameters
    if "redis_url" not in params:
        raise TypeError(f"Settings{inspect.signature(settings_cls)} has no redis_url")
    kwargs = {k: v for k, v in wanted.items() if k in params}
    if "port" not in kwargs and "bind" not in kwargs:
        raise TypeError(f"Settings{inspect.signature(settings_cls)} has no port or bind")
    if "port" in kwargs:
        kwargs.pop("bind", None)
    return settings_cls(**kwargs)


async def _serve(serve_server: Any, settings: Any) -> None:
    if "shutdown_trigger" in inspect.signature(serve_server).parameters:
        # A graceful stop: Hypercorn returns once the trigger does.
        await serve_server(settings, shutdown_trigger=wait_for_stop)
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(serve_server, settings))
        await wait_for_stop()
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis-url", required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        from aiki_server import Settings, serve_server  # type: ignore[attr-defined]

        settings = _settings(Settings, args.redis_url, args.port)
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        print(f"UNAVAILABLE {type(exc).__name__}: {exc}", flush=True)
        return UNAVAILABLE
    trio.run(_serve, serve_server, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
