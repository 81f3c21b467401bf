"""``aiki worker`` with encryption keys: a worker run from the command line follows an
encrypting client (its own client gets the same codec chain), and bad key settings are
refused before it serves, naming the option, never the key."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import trio
from _helpers import scan_redis
from workers.hardening import HANG_GUARD, aiki_command, aiki_worker, cli_env
from workers.hardening_flows import echo_v1

import aiki
from aiki.codecs import Encryption

KEY = bytes(range(32))
MARKER = "marker-cli-worker-7f3a"


def _keys_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys"
    path.write_text(text)
    return path


async def test_a_cli_worker_with_the_key_serves_an_encrypting_client(
    redis_url: str, tmp_path: Path
) -> None:
    keys = _keys_file(tmp_path, f"k1:{base64.b64encode(KEY).decode()}\n")
    async with (
        aiki_worker(
            redis_url,
            "hardening_flows:echo",
            tmp_path / "w.log",
            "--processes",
            "1",
            "--codec-keys-file",
            str(keys),
            "--encode-errors",
        ) as w,
        aiki.client(redis_url=redis_url, codecs=[Encryption({"k1": KEY})]) as client,
    ):
        await w.wait_serving()
        handle = await echo_v1.start(client, {"secret": MARKER})
        with trio.fail_after(HANG_GUARD):
            assert await handle.wait_for_completion(timeout=30) == {"secret": MARKER}
        stored = "\n".join(await scan_redis(client))
    assert MARKER not in stored  # the worker wrote the task record and result encrypted


def _refused(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [*aiki_command(), "worker", "hardening_flows:echo", "--redis-url", "redis://127.0.0.1:1",
         "--processes", "1", *args],
        env=cli_env(**(env or {})), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_bad_worker_key_settings_are_refused_naming_the_setting(tmp_path: Path) -> None:
    short = base64.b64encode(b"ten-bytes!").decode()  # AES takes 16, 24 or 32
    out = _refused(tmp_path, "--codec-keys-file", str(_keys_file(tmp_path, f"k1:{short}")))
    assert "--codec-keys-file" in out and short not in out
    out = _refused(tmp_path, "--codec-keys-file", str(tmp_path / "missing"))
    assert "--codec-keys-file" in out
    out = _refused(tmp_path, "--encode-errors")
    assert "--encode-errors needs codec keys" in out
    out = _refused(tmp_path, env={"AIKI_CODEC_KEYS": "no-colon-here"})
    assert "AIKI_CODEC_KEYS" in out and "no-colon-here" not in out
    assert not os.environ.get("AIKI_CODEC_KEYS")  # the test's own environment untouched
