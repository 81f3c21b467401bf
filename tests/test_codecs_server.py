"""The server and encrypted data (#18): without a key the API, the dashboard and ``aiki
runs show`` show encrypted data as encrypted ("encrypted with key id '1'", never
base64 or plaintext); given the key (``Settings.codecs``, ``AIKI_CODEC_KEYS``,
``aiki server --codec-keys-file``) they show it decrypted; with the wrong key they say
so (``codec_errors``), never a 500. Keys appear in no log line, error or answer."""

from __future__ import annotations

import base64
import logging
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _helpers import running_worker, wait_until
from test_cli import _open_log, cli_env, stop_process, wait_healthy
from test_cli_ops import AIKI, run_aiki
from workers.typed_flows import Approval, Item, Order, ship, typed_orders
from workers.typed_flows import typed_orders_v1 as orders_v1

import aiki
from aiki.codecs import Compression, Encryption, describe, load_keys
from aiki.embedded import free_port
from aiki_server import Settings, serve_server

KEY, OTHER = os.urandom(32), os.urandom(32)
KEY_B64, OTHER_B64 = base64.b64encode(KEY).decode(), base64.b64encode(OTHER).decode()
SECRETS = (KEY_B64, OTHER_B64, KEY.hex(), OTHER.hex(), repr(KEY), repr(OTHER))
MARKERS = ("MARKER-PAYLOAD-5e7", "MARKER-SKU-6f8", "MARKER-EVENT-7a9")
PLACED = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


async def encrypted_run(redis_url: str) -> str:
    """A completed typed run (a task, a child, an event) started and executed by a
    client with ``Compression()`` and ``Encryption({1: KEY})``: its id."""
    codecs = [Compression(min_size=10), Encryption({1: KEY})]
    async with aiki.client(redis_url=redis_url, codecs=codecs) as client:
        async with running_worker(client, typed_orders, ship):
            order = Order(
                order_id=MARKERS[0],
                items=[Item(sku=MARKERS[1], quantity=2)],
                placed_at=PLACED,
                wants_approval=True,
            )
            handle = await orders_v1.start(client, order)

            async def waiting() -> bool:
                return await handle.status() == "awaiting_event"

            await wait_until(waiting, what="the run awaits its event")
            await handle.send_event("approve", Approval(by=MARKERS[2]))
            await handle.wait_for_completion(timeout=30)
    return handle.id


async def views(base_url: str, run_id: str) -> dict[str, Any]:
    """What a server shows of the run: API answers (JSON) and the dashboard's page."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        run = await http.get(f"/api/v1/runs/{run_id}")
        listed = await http.get("/api/v1/runs")
        history = await http.get(f"/api/v1/runs/{run_id}/history")
        waited = await http.get(f"/api/v1/runs/{run_id}/wait", params={"timeout": 1})
        page = await http.get(f"/runs/{run_id}")
    for answer in (run, listed, history, waited, page):
        assert answer.status_code == 200, (answer.url, answer.text)  # never a 500
    return {
        "run": run.json(),
        "listed": next(r for r in listed.json()["runs"] if r["id"] == run_id),
        "history": history.json(),
        "waited": waited.json(),
        "page": page.text,
    }


def api_texts(shown: dict[str, Any]) -> str:
    return "\n".join(repr(shown[k]) for k in ("run", "listed", "history", "waited"))


async def test_the_server_shows_encrypted_data_as_encrypted_or_decrypted_with_the_key(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    run_id = await encrypted_run(redis_url)
    keyed_settings = Settings.from_env(
        {"AIKI_REDIS_URL": redis_url, "AIKI_CODEC_KEYS": f"1:{KEY_B64}"}, port=0
    )
    no_secret_in(repr(keyed_settings))
    async with trio.open_nursery() as nursery:
        plain = await nursery.start(serve_server, Settings(redis_url=redis_url, port=0))
        keyed = await nursery.start(serve_server, keyed_settings)
        wrong = await nursery.start(
            serve_server, Settings(redis_url=redis_url, port=0, codecs=(Encryption({1: OTHER}),))
        )
        without, with_key, with_wrong = (
            await views(plain.base_url, run_id),
            await views(keyed.base_url, run_id),
            await views(wrong.base_url, run_id),
        )
        cli_without = await run_aiki("runs", "show", run_id, "--url", plain.base_url)
        cli_with = await run_aiki("runs", "show", run_id, "--url", keyed.base_url)
        cli_wrong = await run_aiki("runs", "show", run_id, "--url", wrong.base_url)
        nursery.cancel_scope.cancel()
    for cli in (cli_without, cli_with, cli_wrong):
        assert cli.returncode == 0, cli.err

    # Without a key: the API hands out the envelopes (an HTTP client with the key
    # decodes them itself), the dashboard and the CLI say "encrypted", no base64.
    run = without["run"]
    for value in (run["payload"], run["result"]):
        assert "encrypted with key id '1' (zlib, aesgcm/1;" in str(describe(value))
    assert "codec_errors" not in run  # no key: "encrypted" is all there is to say
    tasks = {t["address"].split(":")[0]: t for t in run["tasks"]}
    assert describe(tasks["count-items"]["input"]) is not None
    assert describe(tasks["count-items"]["result"]) is not None
    for text in (api_texts(without), without["page"], cli_without.out):
        for marker in MARKERS:
            assert marker not in text
    for text in (without["page"], cli_without.out):
        assert "[encrypted with key id &#39;1&#39;" in text or "[encrypted with key id '1'" in text
        assert run["payload"][20:60] not in text  # no base64 shown to people

    # With the key: plaintext everywhere (payload, result, task records, the event).
    run = with_key["run"]
    assert run["payload"]["order_id"] == MARKERS[0]
    assert run["result"]["approved_by"] == MARKERS[2]
    tasks = {t["address"].split(":")[0]: t for t in run["tasks"]}
    assert tasks["count-items"]["input"]["items"][0]["sku"] == MARKERS[1]
    assert tasks["count-items"]["result"]["total_quantity"] == 2
    assert any(MARKERS[2] in repr(t) for t in run["tasks"] if "approve" in t["address"])
    assert with_key["listed"]["payload"]["order_id"] == MARKERS[0]
    assert with_key["waited"]["result"]["approved_by"] == MARKERS[2]
    assert MARKERS[1] in repr(with_key["history"]["tasks"])
    assert "codec_errors" not in run and "aiki:codec/1:" not in api_texts(with_key)
    for text in (with_key["page"], cli_with.out):
        for marker in MARKERS:
            assert marker in text
        assert "encrypted" not in text

    # With the wrong key: the envelopes, and why they were not decrypted; no 500.
    run = with_wrong["run"]
    assert describe(run["payload"]) is not None
    assert "not the one it was encrypted with" in run["codec_errors"]["payload"]
    assert "result" in run["codec_errors"]
    for text in (api_texts(with_wrong), with_wrong["page"], cli_wrong.out):
        for marker in MARKERS:
            assert marker not in text
    for text in (with_wrong["page"], cli_wrong.out):
        assert "not decrypted" in text and "not the one it was encrypted with" in text

    for text in (
        caplog.text,
        api_texts(without),
        api_texts(with_key),
        api_texts(with_wrong),
        with_key["page"],
        cli_with.out + cli_with.err,
    ):
        no_secret_in(text)
    assert "key ids ['1']" in caplog.text  # the log says which key ids it has


async def test_aiki_server_takes_a_codec_keys_file(redis_url: str, tmp_path: Path) -> None:
    run_id = await encrypted_run(redis_url)
    keys = tmp_path / "keys"
    keys.write_text(f"# current key first\n2:{OTHER_B64}\n1:{KEY_B64}\n")
    port = free_port()
    log_path = tmp_path / "server.log"
    with _open_log(log_path) as log:
        proc = await trio.lowlevel.open_process(
            [*AIKI, "server", "--port", str(port), "--codec-keys-file", str(keys)],
            env=cli_env(AIKI_REDIS_URL=redis_url, AIKI_LOG_LEVEL="debug"),
            stdout=log,
            stderr=log,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url, proc)
        shown = await views(url, run_id)
    finally:
        code = await stop_process(proc, signal.SIGTERM)
    assert code == 0, log_path.read_text()
    assert shown["run"]["payload"]["order_id"] == MARKERS[0]
    assert MARKERS[1] in shown["page"]
    logged = log_path.read_text()
    assert "key ids ['2', '1']" in logged
    no_secret_in(logged)


async def test_bad_codec_keys_are_refused_without_showing_them(tmp_path: Path) -> None:
    short = base64.b64encode(KEY[:10]).decode()
    cases = [
        ({"AIKI_CODEC_KEYS": f"1:{short}"}, "AIKI_CODEC_KEYS: key id '1' (entry 1) must be"),
        ({"AIKI_CODEC_KEYS": KEY_B64}, "AIKI_CODEC_KEYS: entry 1 must be '<key id>:<base64"),
        ({"AIKI_CODEC_KEYS": f"1:{KEY_B64},1:{OTHER_B64}"}, "key id '1' is given twice"),
        ({"AIKI_CODEC_KEYS_FILE": str(tmp_path / "missing")}, "AIKI_CODEC_KEYS_FILE is invalid"),
        (
            {"AIKI_CODEC_KEYS": f"1:{KEY_B64}", "AIKI_CODEC_KEYS_FILE": "x"},
            "not both",
        ),
    ]
    for env, expected in cases:
        with pytest.raises(aiki.ConfigurationError) as refused:
            Settings.from_env(env)
        assert expected in str(refused.value)
        no_secret_in(str(refused.value))
        assert short not in str(refused.value)
    assert load_keys(f"2:{OTHER_B64}, 1:{KEY_B64}") == {"2": OTHER, "1": KEY}
    bad = tmp_path / "bad"
    bad.write_text(f"1:{short}\n")
    result = await run_aiki(
        "server", "--redis-url", "redis://127.0.0.1:1", "--codec-keys-file", str(bad)
    )
    assert result.returncode == 1 and "--codec-keys-file" in result.err, result.err
    assert short not in result.err + result.out
