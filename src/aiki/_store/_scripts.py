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
-- KEYS: run, stream, runs index, reference key (or '' without reference id)
-- ARGV: id, workflow, version, payload, reference_id, conflict policy
-- Returns {run id, 1} when created, {existing run id, 0} for an idempotent repeat.
local ref_value = nil
if ARGV[5] ~= '' then
  local digest = redis.sha1hex(ARGV[4])
  local existing = redis.call('GET', KEYS[4])
  if existing then
    local sep = string.find(existing, ':', 1, true)
    local existing_id = string.sub(existing, 1, sep - 1)
    if string.sub(existing, sep + 1) == digest or ARGV[6] == 'return_existing' then
      return {existing_id, 0}
    end
    return redis.error_reply('CONFLICT run ' .. existing_id ..
      ' already has reference id ' .. ARGV[5] .. ' with a different payload')
  end
  ref_value = ARGV[1] .. ':' .. digest
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('EXISTS run ' .. ARGV[1] .. ' already exists')
end
local now = now_ms()
local msg = redis.call('XADD', KEYS[2], '*', 'run', ARGV[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'workflow', ARGV[2], 'version', ARGV[3],
  'status', 'queued', 'payload', ARGV[4], 'revision', 0, 'attempts', 0,
  'created_at', now, 'updated_at', now, 'message', msg)
if ref_value then
  redis.call('HSET', KEYS[1], 'reference_id', ARGV[5])
  redis.call('SET', KEYS[4], ref_value)
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
return {ARGV[1], 1}
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
-- replay: {'ok', revision, workflow, version, payload, {address, record, ...}, errors}.
local st = redis.call('HMGET', KEYS[1], 'status', 'workflow', 'version', 'payload',
  'started_at', 'errors')
if not st[1] then return {'missing'} end
if terminal[st[1]] then return {'ended', st[1]} end
if st[1] ~= 'queued' and st[1] ~= 'running' then return {'not-runnable', st[1]} end
local now = now_ms()
local rev = redis.call('HINCRBY', KEYS[1], 'revision', 1)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'message', ARGV[2],
  'updated_at', now)
if not st[5] then redis.call('HSET', KEYS[1], 'started_at', now) end
return {'ok', rev, st[2], st[3], st[4], redis.call('HGETALL', KEYS[2]), st[6] or '[]'}
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

PARK_RUN = Lua(
    "park_run",
    _NOW
    + """
-- KEYS: run, tasks, stream, timers
-- ARGV: revision, stream message id, group, status (queued|awaiting_retry|sleeping),
--       wake at (ms, '' for none), errors JSON ('' to keep), run id, addresses to drop...
-- Suspends the execution: acks its message and either enqueues the run again at once
-- (queued) or leaves it parked with a durable timer that the timer daemon fires.
local st = redis.call('HMGET', KEYS[1], 'status', 'revision')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] ~= 'running' or st[2] ~= ARGV[1] then
  return redis.error_reply('STALE run is ' .. st[1] .. ' at revision ' .. st[2])
end
redis.call('XACK', KEYS[3], ARGV[3], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
for i = 8, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'errors', ARGV[6]) end
redis.call('HINCRBY', KEYS[1], 'revision', 1)
if ARGV[4] == 'queued' then
  local msg = redis.call('XADD', KEYS[3], '*', 'run', ARGV[7])
  redis.call('HSET', KEYS[1], 'status', 'queued', 'message', msg, 'updated_at', now_ms())
  redis.call('HDEL', KEYS[1], 'wake_at')
else
  redis.call('HSET', KEYS[1], 'status', ARGV[4], 'wake_at', ARGV[5], 'updated_at', now_ms())
  redis.call('HDEL', KEYS[1], 'message')
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[7])
end
return 1
""",
)

FIRE_TIMERS = Lua(
    "fire_timers",
    _NOW
    + """
-- KEYS: timers
-- ARGV: key prefix, max timers to fire
-- Moves every run whose timer is due back into its stream. ZREM decides who fires a
-- timer, so several servers running this at once never enqueue a run twice.
local now = now_ms()
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, ARGV[2])
local fired = 0
for _, id in ipairs(due) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local run = ARGV[1] .. ':run:{' .. id .. '}'
    local st = redis.call('HMGET', run, 'status', 'workflow', 'version')
    if st[1] == 'awaiting_retry' or st[1] == 'sleeping' or st[1] == 'scheduled' then
      local stream = ARGV[1] .. ':stream:{' .. st[2] .. '}:' .. st[3]
      local msg = redis.call('XADD', stream, '*', 'run', id)
      redis.call('HSET', run, 'status', 'queued', 'message', msg, 'updated_at', now)
      redis.call('HDEL', run, 'wake_at')
      fired = fired + 1
    end
  end
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {fired, #due, next_due[2] or ''}
""",
)
