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


_RETAIN = """
-- An ended run is kept for the configured retention (``<shard>:config`` retention_ms),
-- then its keys expire by themselves; ``<shard>:ended`` lets the retention daemon drop
-- its index entry too. ``shard`` is the run's key base (``<prefix>:{<n>}``).
local function retain(shard, id, now)
  redis.call('ZADD', shard .. ':ended', now, id)
  local ms = redis.call('HGET', shard .. ':config', 'retention_ms')
  if not ms then return end
  local base = shard .. ':run:' .. id
  for _, key in ipairs({base, base .. ':tasks', base .. ':events', base .. ':children'}) do
    redis.call('PEXPIRE', key, ms)
  end
end
"""

_WAKE_PARENT = """
-- A child that ends puts its parent back in its stream if the parent waits for it.
-- A child lives in its parent's shard, so the parent's keys are in this slot too.
local function wake_parent(shard, parent, now)
  if not parent then return end
  local pkey = shard .. ':run:' .. parent
  local p = redis.call('HMGET', pkey, 'status', 'workflow', 'version', 'id')
  if p[1] == 'awaiting_child_workflow' then
    local stream = shard .. ':stream:' .. p[2] .. ':' .. p[3]
    local msg = redis.call('XADD', stream, '*', 'run', p[4])
    redis.call('HSET', pkey, 'status', 'queued', 'message', msg, 'updated_at', now)
    redis.call('ZREM', shard .. ':timers', p[4])
  end
end
"""

START_RUN = Lua(
    "start_run",
    _NOW
    + """
-- KEYS: run, stream, runs index, reference key, parent's children set, timers
--       (the reference and children keys are only touched with a reference / parent)
-- ARGV: id, workflow, version, payload, reference_id, conflict policy, parent id,
--       start at (ms, '' = now), timeout (ms, '' = none), sensitive ('1' or '')
-- Returns {run id, 1} when created, {existing run id, 0} for an idempotent repeat
-- (same reference id, or a child run that a replay starts again).
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
  if ARGV[7] ~= '' then return {ARGV[1], 0} end
  return redis.error_reply('EXISTS run ' .. ARGV[1] .. ' already exists')
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'workflow', ARGV[2], 'version', ARGV[3],
  'payload', ARGV[4], 'revision', 0, 'attempts', 0, 'created_at', now, 'updated_at', now)
if ARGV[8] ~= '' and tonumber(ARGV[8]) > tonumber(now) then
  redis.call('HSET', KEYS[1], 'status', 'scheduled', 'wake_at', ARGV[8])
  redis.call('ZADD', KEYS[6], ARGV[8], ARGV[1])
else
  local msg = redis.call('XADD', KEYS[2], '*', 'run', ARGV[1])
  redis.call('HSET', KEYS[1], 'status', 'queued', 'message', msg)
end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'timeout_ms', ARGV[9]) end
if ARGV[10] == '1' then redis.call('HSET', KEYS[1], 'sensitive', '1') end
if ref_value then
  redis.call('HSET', KEYS[1], 'reference_id', ARGV[5])
  redis.call('SET', KEYS[4], ref_value)
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'parent', ARGV[7])
  redis.call('SADD', KEYS[5], ARGV[1])
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
return {ARGV[1], 1}
""",
)

_TAKE = """
-- Fences out any previous executor (revision + 1) and returns all the run needs to
-- replay: {'ok', revision, workflow, version, payload, {address, record, ...}, errors,
-- {event field, JSON, ...}, now (ms), started_at, timeout_ms}; or {'missing'},
-- {'ended', status}, {'not-runnable', status}, {'bad-run', why} (keys that are not
-- hashes: a message naming something else; never an error that would stop a batch).
local function take(run, tasks, events, worker, message, now)
  for _, key in ipairs({run, tasks, events}) do
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'hash' and kind ~= 'none' then
      return {'bad-run', key .. ' is a ' .. kind .. ', not a hash'}
    end
  end
  local st = redis.call('HMGET', run, 'status', 'workflow', 'version', 'payload',
    'started_at', 'errors', 'timeout_ms')
  if not st[1] then return {'missing'} end
  if terminal[st[1]] then return {'ended', st[1]} end
  if st[1] ~= 'queued' and st[1] ~= 'running' then return {'not-runnable', st[1]} end
  local rev = redis.call('HINCRBY', run, 'revision', 1)
  redis.call('HINCRBY', run, 'attempts', 1)
  redis.call('HSET', run, 'status', 'running', 'worker', worker, 'message', message,
    'updated_at', now)
  local started = st[5]
  if not started then
    started = now
    redis.call('HSET', run, 'started_at', now)
  end
  return {'ok', rev, st[2], st[3], st[4], redis.call('HGETALL', tasks), st[6] or '[]',
    redis.call('HGETALL', events), now, started, st[7] or ''}
end
"""

TAKE_RUN = Lua(
    "take_run",
    _NOW
    + _TERMINAL
    + _TAKE
    + """
-- KEYS: run, tasks, events
-- ARGV: worker id, stream message id
return take(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], now_ms())
""",
)

READ_AND_TAKE = Lua(
    "read_and_take",
    _NOW
    + _TERMINAL
    + _TAKE
    + """
-- KEYS: streams of one shard
-- ARGV: group, consumer (the worker's id), count per stream, the shard's key base
-- A worker with a backlog reads new messages AND takes their runs in one call:
-- {{stream, message id, run id, take reply}, ...}; a message without a run field comes
-- as {stream, message id, '', {'no-run'}, its fields} (for its dead letter). Never blocks
-- (a worker without a backlog waits in a blocking XREADGROUP instead).
local args = {'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS'}
for i = 1, #KEYS do args[#args + 1] = KEYS[i] end
for i = 1, #KEYS do args[#args + 1] = '>' end
local got = redis.call('XREADGROUP', unpack(args))
if not got then return {} end
local now = now_ms()
local out = {}
for _, s in ipairs(got) do
  for _, entry in ipairs(s[2]) do
    local run = ''
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'run' then run = fields[i + 1] end
    end
    if run ~= '' then
      local key = ARGV[4] .. ':run:' .. run
      out[#out + 1] = {s[1], entry[1], run,
        take(key, key .. ':tasks', key .. ':events', ARGV[2], entry[1], now)}
    else
      out[#out + 1] = {s[1], entry[1], '', {'no-run'}, fields}
    end
  end
end
return out
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
    + _WAKE_PARENT
    + _RETAIN
    + """
-- KEYS: run, stream
-- ARGV: revision, status (completed|failed), field (result|error), value (JSON),
--       stream message id, group, channel, run id, the run's shard key base
local st = redis.call('HMGET', KEYS[1], 'status', 'revision', 'parent')
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
wake_parent(ARGV[9], st[3], now)
retain(ARGV[9], ARGV[8], now)
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
-- KEYS: run, tasks, stream, timers, events, child run (the run itself when none)
-- ARGV: revision, stream message id, group, status, wake at (ms, '' for none),
--       errors JSON ('' to keep), run id, event name (or ''), events already seen,
--       sleep record address (or ''), addresses to drop...
-- Suspends the execution: acks its message and either enqueues the run again at once
-- (queued) or parks it (sleeping, awaiting_*), with a durable timer when wake at is
-- given. What the run waits for may have happened since the execution looked (an event
-- sent, a child ended): then it is enqueued at once instead, so no wake-up is lost.
local st = redis.call('HMGET', KEYS[1], 'status', 'revision')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] ~= 'running' or st[2] ~= ARGV[1] then
  return redis.error_reply('STALE run is ' .. st[1] .. ' at revision ' .. st[2])
end
redis.call('XACK', KEYS[3], ARGV[3], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
for i = 11, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'errors', ARGV[6]) end
redis.call('HINCRBY', KEYS[1], 'revision', 1)
local status = ARGV[4]
if status == 'awaiting_event' and ARGV[8] ~= '' then
  local count = redis.call('HGET', KEYS[5], '#n:' .. ARGV[8])
  if count and tonumber(count) > tonumber(ARGV[9]) then status = 'queued' end
end
if status == 'sleeping' and ARGV[10] ~= '' then
  -- woken early (handle.wakeup) while this execution was still running
  local rec = redis.call('HGET', KEYS[2], ARGV[10])
  if rec and string.find(rec, '"status":"completed"', 1, true) then status = 'queued' end
end
if status == 'awaiting_child_workflow' and KEYS[6] ~= KEYS[1] then
  local child = redis.call('HGET', KEYS[6], 'status')
  if child == 'completed' or child == 'failed' or child == 'cancelled' or not child then
    status = 'queued'
  end
end
local now = now_ms()
if status == 'queued' then
  local msg = redis.call('XADD', KEYS[3], '*', 'run', ARGV[7])
  redis.call('HSET', KEYS[1], 'status', 'queued', 'message', msg, 'updated_at', now)
  redis.call('HDEL', KEYS[1], 'wake_at')
  redis.call('ZREM', KEYS[4], ARGV[7])
else
  redis.call('HSET', KEYS[1], 'status', status, 'updated_at', now)
  redis.call('HDEL', KEYS[1], 'message')
  if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[1], 'wake_at', ARGV[5])
    redis.call('ZADD', KEYS[4], ARGV[5], ARGV[7])
  else
    redis.call('HDEL', KEYS[1], 'wake_at')
  end
end
return status
""",
)

FIRE_TIMERS = Lua(
    "fire_timers",
    _NOW
    + """
-- KEYS: timers
-- ARGV: the shard's key base (``<prefix>:{<n>}``), max timers to fire
-- Moves every run whose timer is due back into its stream. ZREM decides who fires a
-- timer, so several servers running this at once never enqueue a run twice.
local parked = {awaiting_retry = true, sleeping = true, scheduled = true,
  awaiting_event = true, awaiting_child_workflow = true}
local now = now_ms()
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, ARGV[2])
local fired = 0
for _, id in ipairs(due) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local run = ARGV[1] .. ':run:' .. id
    local st = redis.call('HMGET', run, 'status', 'workflow', 'version')
    if parked[st[1]] then
      local stream = ARGV[1] .. ':stream:' .. st[2] .. ':' .. st[3]
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

SEND_EVENT = Lua(
    "send_event",
    _NOW
    + """
-- KEYS: run, events, stream, timers
-- ARGV: event name, data (JSON), reference id (or ''), run id, max events per run
-- Stores the event (even before anyone waits for it); a repeated reference id is
-- stored once. A run waiting for an event goes back to its stream.
local st = redis.call('HMGET', KEYS[1], 'status')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] == 'completed' or st[1] == 'failed' or st[1] == 'cancelled' then
  return redis.error_reply('ENDED run is ' .. st[1])
end
if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[2], 'ref:' .. ARGV[3]) == 1 then
  return 'duplicate'
end
if tonumber(redis.call('HGET', KEYS[2], '#count') or '0') >= tonumber(ARGV[5]) then
  return redis.error_reply('LIMIT run already has ' .. ARGV[5] .. ' events')
end
redis.call('HINCRBY', KEYS[2], '#count', 1)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'ref:' .. ARGV[3], '1') end
local now = now_ms()
-- The event is stored as the JSON it came as (never decoded here, so numbers and empty
-- arrays keep their exact form): field e:<name>#<n>, n counted by #n:<name>.
local n = redis.call('HINCRBY', KEYS[2], '#n:' .. ARGV[1], 1) - 1
redis.call('HSET', KEYS[2], 'e:' .. ARGV[1] .. '#' .. n, '{"data":' .. ARGV[2] ..
  ',"reference_id":' .. cjson.encode(ARGV[3]) .. ',"at":' .. now .. '}')
if st[1] == 'awaiting_event' then
  local msg = redis.call('XADD', KEYS[3], '*', 'run', ARGV[4])
  redis.call('HSET', KEYS[1], 'status', 'queued', 'message', msg, 'updated_at', now)
  redis.call('ZREM', KEYS[4], ARGV[4])
end
return 'stored'
""",
)

WAKE_SLEEP = Lua(
    "wake_sleep",
    _NOW
    + """
-- KEYS: run, tasks, stream, timers
-- ARGV: sleep name, run id
-- Ends a sleep early: its record is marked done and a sleeping run is enqueued.
local st = redis.call('HMGET', KEYS[1], 'status')
if not st[1] then return redis.error_reply('MISSING run') end
local prefix = 'sleep:' .. ARGV[1] .. ':'
local tasks = redis.call('HGETALL', KEYS[2])
local woken = 0
for i = 1, #tasks, 2 do
  if string.sub(tasks[i], 1, #prefix) == prefix and
     string.match(string.sub(tasks[i], #prefix + 1), '^%d+$') then
    local rec = cjson.decode(tasks[i + 1])
    if rec.status == 'sleeping' then
      rec.status = 'completed'
      rec.woken_early = true
      redis.call('HSET', KEYS[2], tasks[i], cjson.encode(rec))
      woken = woken + 1
    end
  end
end
if woken > 0 and st[1] == 'sleeping' then
  local msg = redis.call('XADD', KEYS[3], '*', 'run', ARGV[2])
  redis.call('HSET', KEYS[1], 'status', 'queued', 'message', msg, 'updated_at', now_ms())
  redis.call('HDEL', KEYS[1], 'wake_at')
  redis.call('ZREM', KEYS[4], ARGV[2])
end
return woken
""",
)

CANCEL_RUN = Lua(
    "cancel_run",
    _NOW
    + _WAKE_PARENT
    + _RETAIN
    + """
-- KEYS: run, stream, timers, children
-- ARGV: reason (JSON string), group, run-ended channel, control channel, run id,
--       the run's shard key base
-- Ends the run `cancelled` whatever it was doing (fencing out a running executor) and
-- returns its children so the caller cancels them too. Already ended: returns status.
local st = redis.call('HMGET', KEYS[1], 'status', 'message', 'parent')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] == 'completed' or st[1] == 'failed' or st[1] == 'cancelled' then
  return {st[1], {}}
end
local now = now_ms()
local err = '{"type":"Cancelled","message":' .. ARGV[1] .. '}'
redis.call('HINCRBY', KEYS[1], 'revision', 1)
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'error', err, 'ended_at', now,
  'updated_at', now)
if st[2] then
  redis.call('XACK', KEYS[2], ARGV[2], st[2])
  redis.call('XDEL', KEYS[2], st[2])
  redis.call('HDEL', KEYS[1], 'message')
end
redis.call('ZREM', KEYS[3], ARGV[5])
redis.call('PUBLISH', ARGV[3], '{"id":"' .. ARGV[5] .. '","status":"cancelled","error":' ..
  err .. '}')
redis.call('PUBLISH', ARGV[4], '{"action":"cancel","run":"' .. ARGV[5] .. '"}')
wake_parent(ARGV[6], st[3], now)
retain(ARGV[6], ARGV[5], now)
return {'cancelled', redis.call('SMEMBERS', KEYS[4])}
""",
)

PAUSE_RUN = Lua(
    "pause_run",
    _NOW
    + """
-- KEYS: run, stream, timers
-- ARGV: group, control channel, run id
-- A paused run is not picked up until resumed: its message is dropped, its timer
-- kept aside, and a running execution is fenced out and told to stop.
local st = redis.call('HMGET', KEYS[1], 'status', 'message')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] == 'completed' or st[1] == 'failed' or st[1] == 'cancelled' then
  return redis.error_reply('ENDED run is ' .. st[1])
end
if st[1] == 'paused' then return 'paused' end
redis.call('HINCRBY', KEYS[1], 'revision', 1)
redis.call('HSET', KEYS[1], 'status', 'paused', 'paused_from', st[1], 'updated_at', now_ms())
if st[2] then
  redis.call('XACK', KEYS[2], ARGV[1], st[2])
  redis.call('XDEL', KEYS[2], st[2])
  redis.call('HDEL', KEYS[1], 'message')
end
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[2], '{"action":"pause","run":"' .. ARGV[3] .. '"}')
return 'paused'
""",
)

RESUME_RUN = Lua(
    "resume_run",
    _NOW
    + """
-- KEYS: run, stream, timers
-- ARGV: run id
-- A resumed run waits for its timer again if it had one (sleep, retry delay, delayed
-- start); otherwise it is enqueued and its replay finds out what it still waits for.
local st = redis.call('HMGET', KEYS[1], 'status', 'paused_from', 'wake_at')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] ~= 'paused' then return st[1] end
local now = now_ms()
redis.call('HDEL', KEYS[1], 'paused_from')
-- A sleep is re-checked by its replay (it may have been woken while paused); retry
-- delays and delayed starts wait for their timer again.
if st[3] and tonumber(st[3]) > tonumber(now) and
   (st[2] == 'awaiting_retry' or st[2] == 'scheduled') then
  redis.call('HSET', KEYS[1], 'status', st[2], 'updated_at', now)
  redis.call('ZADD', KEYS[3], st[3], ARGV[1])
  return st[2]
end
local msg = redis.call('XADD', KEYS[2], '*', 'run', ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'message', msg, 'updated_at', now)
return 'queued'
""",
)

FIRE_SCHEDULE = Lua(
    "fire_schedule",
    _NOW
    + """
-- KEYS: schedule due set, schedule last-run hash, run, stream, runs index
-- ARGV: schedule id, occurrence (ms) the caller saw as due, next occurrence (ms or ''),
--       action (start|skip), run id, workflow, version, payload, timeout (ms or '')
-- Fires one occurrence of a schedule exactly once, however many servers try: only the
-- caller that still sees the occurrence it computed from moves the schedule on.
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
if ARGV[4] ~= 'start' or redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
local now = now_ms()
local msg = redis.call('XADD', KEYS[4], '*', 'run', ARGV[5])
redis.call('HSET', KEYS[3], 'id', ARGV[5], 'workflow', ARGV[6], 'version', ARGV[7],
  'payload', ARGV[8], 'revision', 0, 'attempts', 0, 'created_at', now, 'updated_at', now,
  'status', 'queued', 'message', msg, 'schedule', ARGV[1], 'occurrence', ARGV[2])
if ARGV[9] ~= '' then redis.call('HSET', KEYS[3], 'timeout_ms', ARGV[9]) end
redis.call('ZADD', KEYS[5], now, ARGV[5])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
return 1
""",
)


RAISE_SHARDS = Lua(
    "raise_shards",
    """
-- KEYS: the deployment's shard count; ARGV: the shards a version registers with
-- Raises the count, never lowers it (runs in higher shards must stay readable).
local current = tonumber(redis.call('GET', KEYS[1]) or '1')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return math.max(current, tonumber(ARGV[1]))
""",
)
