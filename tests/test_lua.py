"""The store's Lua scripts as files: lint-clean, the key names they build are the ones
``_keys.py`` builds, and every script has exactly one binding that names its KEYS and
ARGV in the script's order and count."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiki._redis import Lua, Redis, connect
from aiki._store import GROUP, Keys, _binding, _scripts, shard_of

ROOT = Path(__file__).resolve().parent.parent
LUA_DIR = ROOT / "src" / "aiki" / "_store" / "lua"
SCRIPTS = sorted(p.stem for p in LUA_DIR.glob("*.lua") if p.stem != "lib")


def test_the_scripts_are_found() -> None:
    assert len(SCRIPTS) >= 16 and "start_run" in SCRIPTS and "heartbeat" in SCRIPTS


@pytest.mark.skipif(
    shutil.which("luacheck") is None,
    reason="luacheck is not installed (Debian: apt-get install lua-check)",
)
def test_luacheck_is_clean() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in LUA_DIR.glob("*.lua"))
    done = subprocess.run(
        ["luacheck", "--no-color", "--config", ".luacheckrc", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"0 warnings / 0 errors in {len(files)} files" in done.stdout


@pytest.mark.skipif(shutil.which("luacheck") is None, reason="luacheck is not installed")
def test_luacheck_catches_an_undefined_name(tmp_path: Path) -> None:
    # The probe is written outside src/ (other tests list the scripts meanwhile).
    bad = tmp_path / "zz_lint_probe.lua"
    bad.write_text("return now_mss()\n")
    done = subprocess.run(
        ["luacheck", "--no-color", "--config", str(ROOT / ".luacheckrc"), str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "now_mss" in done.stdout


# -- key builders ------------------------------------------------------------------------


@pytest.fixture
async def private_redis(redis_url: str) -> AsyncIterator[Redis]:
    redis = await connect(redis_url, name="aiki-test-lua")
    try:
        yield redis
    finally:
        await redis.aclose()


KEY_PROBE = Lua(
    "key_probe",
    _binding.lua_text("lib")
    + """
local prefix, id, workflow, version, ref = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local shard = shard_of(id)
local base = key_base(prefix, shard)
return {tostring(shard), base, key_run(base, id), key_tasks(base, id), key_events(base, id),
  key_children(base, id), key_stream(base, workflow, version),
  key_reference(base, workflow, ref), key_runs(base), key_ended(base), key_timers(base),
  key_config(base), key_clock_offset(base), base_of(key_run(base, id)),
  base_of(key_stream(base, workflow, version)), key_index(base, 'attr:customer', ref),
  key_indexed(base, id), key_concurrency(base, workflow, version, ref),
  key_concurrency_waiting(base, workflow, version, ref),
  key_concurrency(base, workflow, version, ''), key_queue(base, workflow, version),
  key_held(base, workflow, version), sibling(key_stream(base, workflow, version), 'queue'),
  sibling(key_stream(base, workflow, version), 'held'), GROUP}
""",
)


@pytest.mark.parametrize(
    ("prefix", "run_id"),
    [
        ("aiki", "00" + "ab" * 15),
        ("aiki", "0f" + "cd" * 15),
        ("team-a:prod", "ff" + "01" * 15),
        ("x", "7a9b"),
        ("aiki", "zz-not-hex"),
    ],
)
async def test_lua_key_builders_match_keys(private_redis: Redis, prefix: str, run_id: str) -> None:
    workflow, version, ref = "orders", "v2", "ref-1"
    reply = await private_redis.script(KEY_PROBE, [], [prefix, run_id, workflow, version, ref])
    got = [v.decode() if isinstance(v, bytes) else str(v) for v in reply]
    k = Keys(prefix)
    shard = shard_of(run_id)
    assert got == [
        str(shard),
        k.base(shard),
        k.run(run_id),
        k.tasks(run_id),
        k.events(run_id),
        k.children(run_id),
        k.stream(workflow, version, shard),
        k.reference(workflow, ref, shard),
        k.runs_index(shard),
        k.ended(shard),
        k.timers(shard),
        k.config(shard),
        k.clock_offset(shard),
        k.base(shard),
        k.base(shard),
        k.index("attr:customer", ref, shard),
        k.indexed(run_id),
        k.concurrency(workflow, version, ref, shard),
        k.concurrency_waiting(workflow, version, ref, shard),
        k.concurrency(workflow, version, "", shard),
        k.queue(workflow, version, shard),
        k.held(workflow, version, shard),
        k.queue(workflow, version, shard),
        k.held(workflow, version, shard),
        GROUP,
    ]
    assert Keys.held_of(k.stream(workflow, version, shard)) == k.held(workflow, version, shard)


_STATUS_WRITE = re.compile(r"'HSET',[^)]*'status',", re.DOTALL)


@pytest.mark.parametrize("name", [*SCRIPTS, "lib"])
def test_every_status_change_moves_the_status_index(name: str) -> None:
    """A script (or library function) that writes a run's ``status`` calls
    ``index_status`` as often, so a listing by status stays exact (a new script that
    forgets it fails here; ``tests/test_search.py`` follows every transition)."""
    text = _binding.lua_text(name)
    writes = len(_STATUS_WRITE.findall(text))
    calls = len(re.findall(r"\bindex_status\(run|\bindex_status\(pkey", text))
    assert calls >= writes, f"{name}.lua writes a status {writes} times, indexes {calls}"


# -- bindings ----------------------------------------------------------------------------


def _header(text: str, what: str) -> list[str]:
    match = re.search(rf"^-- {what}: (.*)$", text, re.MULTILINE)
    assert match, f"no '-- {what}:' header"
    return [name.strip().replace("...", "*") for name in match.group(1).split(",")]


def _highest(text: str, what: str) -> int:
    return max((int(n) for n in re.findall(rf"\b{what}\[(\d+)\]", text)), default=0)


def test_every_script_has_exactly_one_binding() -> None:
    bound = [b.LUA.name for b in _scripts.BINDINGS]
    assert sorted(bound) == SCRIPTS
    declared = [
        value
        for value in vars(_scripts).values()
        if isinstance(value, type)
        and issubclass(value, _binding.Binding)
        and value is not _binding.Binding
    ]
    assert sorted(b.LUA.name for b in declared) == SCRIPTS


@pytest.mark.parametrize("binding", _scripts.BINDINGS, ids=lambda b: b.LUA.name)
def test_binding_matches_its_script(binding: type[_binding.Binding]) -> None:
    text = _binding.lua_text(binding.LUA.name)
    for what, names in (("KEYS", binding.KEYS), ("ARGV", binding.ARGV)):
        assert _header(text, what) == list(names), f"{what} header differs from the binding"
        fixed = [n for n in names if not n.startswith("*")]
        # The highest literal position the script reads is the binding's fixed count
        # (a script with a rest list reads beyond it with a loop, never a literal).
        assert _highest(text, what) == len(fixed), what
        assert all(not n.startswith("*") for n in names[:-1]), "a rest list comes last"


def test_a_binding_puts_each_value_in_its_place() -> None:
    call = _scripts.RecordTask(run="R", tasks="T", revision=7, address="a:0", record="{}")
    assert call.key_list() == ["R", "T"]
    assert call.arg_list() == [7, "a:0", "{}"]
    assert call.evalsha() == ["EVALSHA", _scripts.RecordTask.LUA.sha, "2", "R", "T", 7, "a:0", "{}"]
    park = _scripts.Heartbeat(stream="S", group="g", consumer="c", ids=["1-0", "2-0"])
    assert park.arg_list() == ["g", "c", "1-0", "2-0"]
    with pytest.raises(TypeError):
        _scripts.RecordTask(run="R", tasks="T", revision=7, address="a:0")  # type: ignore[call-arg]


def test_includes_are_replaced_by_the_library() -> None:
    for name in SCRIPTS:
        source = _binding.lua_source(name)
        assert not re.search(r'^--- @include "', source, re.MULTILINE)
        if re.search(r'^--- @include "lib"$', _binding.lua_text(name), re.MULTILINE):
            assert "local function fence(" in source
