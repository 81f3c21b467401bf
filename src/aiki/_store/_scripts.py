"""Every run transition, each ONE atomic Lua script (one round trip).

Each script checks the run's status and, for an executor's writes, its ``revision``
(the fence): taking a run increments the revision, and a write naming an older revision
is refused with ``STALE``, so a worker that lost its claim can change nothing. The
stream ack that belongs to a transition happens inside the same script, so a run is
never acked without its outcome recorded, nor recorded without the ack.

Error replies start with an upper-case code (``STALE``, ``MISSING``, ``EXISTS``) that
``aiki._redis`` turns into :class:`ScriptRefused`. Times come from Redis ``TIME`` (ms),
so every machine agrees on them.
"""

from __future__ import annotations

from .._redis import Lua

_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tostring(t[1] * 1000 + math.floor(t[2] / 1000))
end
"""

_TERMINAL = """
local terminal = {completed = true, failed = true, cancelled = true}
"""

START_RUN = Lua(
    "start_run",
    _NOW
    + """
-- KEYS: run, stream, runs index
-- ARGV: id, workflow, version, payload, reference_id
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('EXISTS run ' .. ARGV[1] .. ' already exists')
end
local now = now_ms()
local msg = redis.call('XADD', KEYS[2], '*', 'run', ARGV[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'workflow', ARGV[2], 'version', ARGV[3],
  'status', 'queued', 'payload', ARGV[4], 'revision', 0, 'attempts', 0,
  'created_at', now, 'updated_at', now, 'message', msg)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'reference_id', ARGV[5]) end
redis.call('ZADD', KEYS[3], now, ARGV[1])
return msg
""",
)

TAKE_RUN = Lua(
    "take_run",
    _NOW
    + _TERMINAL
    + """
-- KEYS: run, tasks
-- ARGV: worker id, stream message id
-- Fences out any previous executor (revision + 1) and returns all the run needs to
-- replay: {'ok', revision, workflow, version, payload, {address, record, ...}}.
local st = redis.call('HMGET', KEYS[1], 'status', 'workflow', 'version', 'payload',
  'started_at')
if not st[1] then return {'missing'} end
if terminal[st[1]] then return {'ended', st[1]} end
if st[1] ~= 'queued' and st[1] ~= 'running' then return {'not-runnable', st[1]} end
local now = now_ms()
local rev = redis.call('HINCRBY', KEYS[1], 'revision', 1)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'message', ARGV[2],
  'updated_at', now)
if not st[5] then redis.call('HSET', KEYS[1], 'started_at', now) end
return {'ok', rev, st[2], st[3], st[4], redis.call('HGETALL', KEYS[2])}
""",
)

RECORD_TASK = Lua(
    "record_task",
    _NOW
    + """
-- KEYS: run, tasks
-- ARGV: revision, task address, task record (JSON)
local st = redis.call('HMGET', KEYS[1], 'status', 'revision')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] ~= 'running' or st[2] ~= ARGV[1] then
  return redis.error_reply('STALE run is ' .. st[1] .. ' at revision ' .. st[2])
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 'updated_at', now_ms())
return 1
""",
)

FINISH_RUN = Lua(
    "finish_run",
    _NOW
    + """
-- KEYS: run, stream
-- ARGV: revision, status (completed|failed), field (result|error), value (JSON),
--       stream message id, group, channel, run id
local st = redis.call('HMGET', KEYS[1], 'status', 'revision')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] ~= 'running' or st[2] ~= ARGV[1] then
  return redis.error_reply('STALE run is ' .. st[1] .. ' at revision ' .. st[2])
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'status', ARGV[2], ARGV[3], ARGV[4], 'ended_at', now,
  'updated_at', now)
redis.call('HDEL', KEYS[1], 'message')
redis.call('XACK', KEYS[2], ARGV[6], ARGV[5])
redis.call('XDEL', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[7], '{"id":"' .. ARGV[8] .. '","status":"' .. ARGV[2] ..
  '","' .. ARGV[3] .. '":' .. ARGV[4] .. '}')
return 1
""",
)

REQUEUE_RUN = Lua(
    "requeue_run",
    _NOW
    + """
-- KEYS: run, stream
-- ARGV: revision, old stream message id, group
-- An execution that stops without an outcome (worker shutting down) hands the run
-- straight back to the queue instead of waiting for a claim timeout.
local st = redis.call('HMGET', KEYS[1], 'status', 'revision')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] ~= 'running' or st[2] ~= ARGV[1] then
  return redis.error_reply('STALE run is ' .. st[1] .. ' at revision ' .. st[2])
end
local run_id = redis.call('HGET', KEYS[1], 'id')
redis.call('XACK', KEYS[2], ARGV[3], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
local msg = redis.call('XADD', KEYS[2], '*', 'run', run_id)
redis.call('HINCRBY', KEYS[1], 'revision', 1)
redis.call('HSET', KEYS[1], 'status', 'queued', 'message', msg, 'updated_at', now_ms())
return msg
""",
)
