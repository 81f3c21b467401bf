"""A private Redis Cluster for tests: N masters on free ports, no replicas.

Each node is a ``redis-server --cluster-enabled yes`` (the same binary the other tests
use: from PATH, or the embedded one); the cluster is formed with
``redis-cli --cluster create`` when ``redis-cli`` is on PATH, else with the commands it
sends (``CLUSTER ADDSLOTSRANGE`` + ``CLUSTER MEET``). Nodes can be killed and restarted
like any ``RedisServerProcess``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from _resp import RespError, command

from aiki.embedded import RedisServerProcess, free_port

SLOTS = 16384


class RedisCluster:
    """``masters`` Redis Cluster nodes sharing the 16,384 slots evenly."""

    def __init__(self, data_dir: Path, masters: int = 3) -> None:
        # Each node gets its own free port for the cluster bus (the default, port + 10000,
        # does not exist for ports above 55535).
        self.bus_ports = [free_port() for _ in range(masters)]
        self.nodes = [
            RedisServerProcess(
                data_dir=data_dir / f"node{i}",
                extra_args=[
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    *("--cluster-node-timeout", "5000"),
                    *("--cluster-port", str(self.bus_ports[i])),
                ],
            )
            for i in range(masters)
        ]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes if node.port is not None]

    @property
    def url(self) -> str:
        """A seed node's URL: cluster clients discover the others from it."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or shutil.which("valkey-cli")
        if cli:
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{port}" for port in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],  # fmt: skip
                check=True,
                capture_output=True,
                timeout=timeout,
            )
        else:
            share = SLOTS // len(self.nodes)
            for i, port in enumerate(self.ports):
                last = SLOTS - 1 if i == len(self.nodes) - 1 else (i + 1) * share - 1
                command(port, "CLUSTER", "ADDSLOTSRANGE", i * share, last)
            for port, bus in zip(self.ports[1:], self.bus_ports[1:], strict=True):
                command(self.ports[0], "CLUSTER", "MEET", "127.0.0.1", port, bus)
        self.wait_ok(timeout)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every node says ``cluster_state:ok`` and knows every master."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ok = all(self._node_ok(port) for port in self.ports)
            except (OSError, RespError):
                ok = False
            if ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster on {self.ports} did not become ready")
            time.sleep(0.1)

    def _node_ok(self, port: int) -> bool:
        info = command(port, "CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        masters = sum(
            1
            for line in _text(command(port, "CLUSTER", "NODES")).splitlines()
            if "master" in line and "fail" not in line
        )
        return "cluster_state:ok" in text and masters == len(self.nodes)

    def port_of_slot(self, slot: int) -> int:
        """The port of the master serving ``slot``."""
        for entry in command(self.ports[0], "CLUSTER", "SLOTS"):
            start, end, master = int(entry[0]), int(entry[1]), entry[2]
            if start <= slot <= end:
                return int(master[1])
        raise LookupError(slot)

    def keyslot(self, key: str) -> int:
        return int(command(self.ports[0], "CLUSTER", "KEYSLOT", key))

    def port_of_key(self, key: str) -> int:
        return self.port_of_slot(self.keyslot(key))

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
