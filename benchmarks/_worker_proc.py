"""A worker subprocess: ``python -m benchmarks._worker_proc --redis-url URL``.

Serves every benchmark workflow until a line ``stop`` (or end of file) arrives on stdin,
then stops gracefully. Prints ``READY <pid>`` once subscribed to its streams, and
``STOPPED <executions finished>`` at the end. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import trio

import aiki
from aiki.codecs import Encryption

from ._common import wait_for_stop
from ._workflows import ALL, CONCURRENCY, FLOW


async def serve(args: argparse.Namespace) -> int:
    # The "typed" scenario's encrypted round: the key (hex) comes in the environment.
    key = os.environ.get("AIKI_BENCH_KEY")
    codecs = [Encryption({1: bytes.fromhex(key)})] if key else []
    async with aiki.client(redis_url=args.redis_url, codecs=codecs) as client:
        worker = aiki.worker(
            client,
            id=args.id,
            max_concurrent_workflow_runs=args.concurrency,
            subscriber=aiki.RedisStreams(block_time=args.block_time),
        )
        served = {"concurrency": CONCURRENCY, "flow": FLOW}.get(
            os.environ.get("AIKI_BENCH_WORKFLOWS", ""), ALL
        )
        for wf in served:
            worker.workflow_registry.add(wf)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.start)
            print(f"READY {os.getpid()}", flush=True)
            await wait_for_stop()
            await worker.stop()
        print(f"STOPPED {worker.executions_finished}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis-url", required=True)
    p.add_argument("--id", default=None)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--block-time", type=float, default=1.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    return trio.run(serve, args)


if __name__ == "__main__":
    sys.exit(main())
