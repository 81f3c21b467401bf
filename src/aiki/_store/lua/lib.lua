--- The library every script includes: the loader replaces a script's
--- `--- @include "lib"` line with this file (Redis EVAL has no includes). Local functions
--- only: Redis forbids scripts to create globals.

-- The key base `<prefix>:{<shard>}` of any key of a shard: the key up to its hash tag
-- (the first `{...}`, as Redis Cluster reads it).
local function base_of(key) return string.match(key, '^[^{]*{[^}]*}') end
local function key_clock_offset(base) return base .. ':clock-offset' end

-- The shard's clock, in milliseconds, as a string: Redis TIME (every machine agrees on
-- it) plus the virtual clock's offset, which only a time-skipping test environment
-- writes (aiki/_time_skipping.py). In production the offset key is absent: this costs
-- one GET of a missing key in the slot the script already works in. `key` is any key
-- of the shard (the offset has one copy per shard, so a cluster finds it in the slot).
local function now_ms(key)
  local t = redis.call('TIME')
  local ms = t[1] * 1000 + math.floor(t[2] / 1000)
  local offset = redis.call('GET', key_clock_offset(base_of(key)))
  if offset then ms = ms + tonumber(offset) end
  return tostring(ms)
end

-- A run in one of these statuses never changes again.
local function is_terminal(status)
  return status == 'completed' or status == 'failed' or status == 'cancelled'
end

-- The revision fence of an executor's write: the run must exist, be running, and be at
-- `revision` (taking a run increments it, so a worker that lost its claim writes
-- nothing). Returns the HMGET reply {status, revision, extra fields...}, or nil and the
-- refusal to return (MISSING, STALE).
local function fence(run, revision, ...)
  local st = redis.call('HMGET', run, 'status', 'revision', ...)
  if not st[1] then return nil, redis.error_reply('MISSING run') end
  if st[1] ~= 'running' or st[2] ~= revision then
    return nil, redis.error_reply('STALE run is ' .. st[1] .. ' at revision ' .. st[2])
  end
  return st
end

-- Key builders: exactly the names of aiki/_store/_keys.py (a test compares them).
-- `base` is a shard's key base, `<prefix>:{<shard>}`.
local function key_base(prefix, shard) return prefix .. ':{' .. shard .. '}' end
local function shard_of(id)
  local digits = string.sub(id, 1, 2)
  if string.match(digits, '^%x%x$') then return tonumber(digits, 16) end
  return 0
end
local function key_run(base, id) return base .. ':run:' .. id end
local function key_tasks(base, id) return key_run(base, id) .. ':tasks' end
local function key_events(base, id) return key_run(base, id) .. ':events' end
local function key_children(base, id) return key_run(base, id) .. ':children' end
local function key_stream(base, workflow, version)
  return base .. ':stream:' .. workflow .. ':' .. version
end
local function key_queue(base, workflow, version)
  return base .. ':queue:' .. workflow .. ':' .. version
end
local function key_held(base, workflow, version)
  return base .. ':held:' .. workflow .. ':' .. version
end
-- The key of kind `kind` (queue, held) beside a version's stream key.
local function sibling(stream, kind)
  local base = base_of(stream)
  return base .. ':' .. kind .. string.sub(stream, #base + 8)
end
local function key_reference(base, workflow, reference_id)
  return base .. ':reference:' .. workflow .. ':' .. reference_id
end
local function key_runs(base) return base .. ':runs' end
local function key_ended(base) return base .. ':ended' end
local function key_timers(base) return base .. ':timers' end
local function key_config(base) return base .. ':config' end
local function key_index(base, kind, value) return base .. ':index:' .. kind .. ':' .. value end
local function key_indexed(base, id) return key_run(base, id) .. ':indexed' end
local function key_concurrency(base, workflow, version, key)
  return base .. ':concurrency:' .. workflow .. ':' .. version .. ':' .. key
end
local function key_concurrency_waiting(base, workflow, version, key)
  return base .. ':concurrency-waiting:' .. workflow .. ':' .. version .. ':' .. key
end

-- Search indexes: sorted sets of run ids scored by creation time (ms), one per value of
-- a filter (`key_index(base, kind, value)`): status, workflow, version, reference id,
-- and each attribute a workflow sets (kind `attr:<name>`). A listing intersects them on
-- the server (find_runs), newest first. Moves run `id` from the status index of `old`
-- (nil for a new run) to that of `new`: EVERY script that changes a run's status calls
-- this, so a status filter is exact without reading the runs.
local function index_status(run, id, old, new)
  if old == new then return end
  local base = base_of(run)
  if old then redis.call('ZREM', key_index(base, 'status', old), id) end
  redis.call('ZADD', key_index(base, 'status', new), redis.call('HGET', run, 'created_at'), id)
end

-- Adds run `id` (created at `created`) to the index `kind`:`value`, and the index to
-- the run's `indexed` set: pruning the run removes it from every index it is in.
local function index_add(base, id, created, kind, value)
  local key = key_index(base, kind, value)
  redis.call('ZADD', key, created, id)
  redis.call('SADD', key_indexed(base, id), key)
end

local function index_remove(base, id, kind, value)
  local key = key_index(base, kind, value)
  redis.call('ZREM', key, id)
  redis.call('SREM', key_indexed(base, id), key)
end

-- Priorities (docs/flow-control.md#priorities). A run without a priority (0) waits as
-- a message naming it in its version's stream, as it always did: that path costs no
-- more than before but one ZRANGE of a missing key when taken. A run with a priority
-- waits in the version's queue, a sorted set scored (100 - priority) * 1e13 + n, its
-- turn in line (best first, FIFO within a priority; a run without one that a better run
-- overtook waits there too, at its place in the stream); its message is in the
-- version's held stream (ids `1-<n>`, never read with '>': the take claims it, so
-- heartbeats, acks and claims of a dead worker's runs work as for any message); and it
-- rings a doorbell in the stream (a message without a run), which wakes a worker as any
-- message does. Whatever a worker reads, `take_next` takes the best waiting run. So a
-- backlog in the stream delays a run with a priority by the executions in progress
-- only: a worker reads no more messages than it has free slots, and the take decides.
local GROUP = 'aiki-workers'
local PRIORITY_STEP = 1e13  -- more held messages than a version will ever have
local NO_PRIORITY = 100 * PRIORITY_STEP  -- scores from here on: runs without a priority

local function is_held(message) return string.sub(message, 1, 2) == '1-' end

-- The queue score of a run without a priority whose stream message is `message`
-- (`<ms>-<seq>`): its exact place in the stream (ms since 2017 * 2048 + seq; exact in a
-- double until the year 2141, and for up to 2048 messages a millisecond).
local function stream_place(message)
  if not message then return NO_PRIORITY end
  local ms, seq = string.match(message, '^(%d+)-(%d+)$')
  return NO_PRIORITY + (tonumber(ms) - 1.5e12) * 2048 + math.min(tonumber(seq), 2047)
end

-- Run `id` (key `run`) waits in the queue beside `stream`, with a new message in the
-- held stream (made with its group the first time): with `priority` > 0, after the runs
-- of that priority waiting already (the held message's number, `1-<n>`, counts them in);
-- with 0 (overtaken), at the place of its stream message `message`.
local function hold(run, id, stream, priority, message)
  local held = sibling(stream, 'held')
  if redis.call('EXISTS', held) == 0 then
    redis.call('XGROUP', 'CREATE', held, GROUP, '0', 'MKSTREAM')
  end
  local msg = redis.call('XADD', held, '1-*', 'run', id)
  redis.call('HSET', run, 'message', msg)
  local score = stream_place(message)
  if priority > 0 then score = (100 - priority) * PRIORITY_STEP + tonumber(string.sub(msg, 3)) end
  redis.call('ZADD', sibling(stream, 'queue'), string.format('%.0f', score), id)
end

-- Puts run `id` in line for an execution of its version (`stream`, in its shard) and
-- sets its `message`; `priority` is the run's (nil or false: none).
local function enqueue(run, id, stream, priority)
  if not priority then
    redis.call('HSET', run, 'message', redis.call('XADD', stream, '*', 'run', id))
    return
  end
  hold(run, id, stream, tonumber(priority))
  redis.call('XADD', stream, '*', 'doorbell', priority)
end

-- `enqueue` at the run's own priority: every transition that puts a run back in line
-- (a timer, an event, a child's end, resume, retry, requeue, a reclaim) keeps it.
local function requeue(run, id, stream)
  enqueue(run, id, stream, redis.call('HGET', run, 'priority'))
end

-- Acks and deletes run `id`'s message (from the held stream if it is a held one, and
-- the run leaves the queue: it may be waiting there).
local function drop_message(stream, group, message, id)
  if is_held(message) then
    redis.call('ZREM', sibling(stream, 'queue'), id)
    stream = sibling(stream, 'held')
  end
  redis.call('XACK', stream, group, message)
  redis.call('XDEL', stream, message)
end

-- An ended run is kept for the configured retention (the shard's config retention_ms),
-- then its keys expire by themselves; the shard's `ended` set lets the retention daemon
-- drop its index entry too.
local function retain(base, id, now)
  redis.call('ZADD', key_ended(base), now, id)
  local ms = redis.call('HGET', key_config(base), 'retention_ms')
  if not ms then return end
  for _, key in ipairs({key_run(base, id), key_tasks(base, id), key_events(base, id),
      key_children(base, id)}) do
    redis.call('PEXPIRE', key, ms)
  end
end

-- A child that ends puts its parent back in its stream if the parent waits for it.
-- A child lives in its parent's shard, so the parent's keys are in this slot too.
local function wake_parent(base, parent, now)
  if not parent then return end
  local pkey = key_run(base, parent)
  local p = redis.call('HMGET', pkey, 'status', 'workflow', 'version', 'id')
  if p[1] == 'awaiting_child_workflow' then
    requeue(pkey, p[4], key_stream(base, p[2], p[3]))
    redis.call('HSET', pkey, 'status', 'queued', 'updated_at', now)
    index_status(pkey, p[4], p[1], 'queued')
    redis.call('ZREM', key_timers(base), p[4])
  end
end

-- Concurrency keys (aiki/_concurrency.py). A run of a version with `concurrency=` keeps
-- its key and limit in its hash (`concurrency_key`, '' for the version's shared key;
-- `concurrency_limit`), and `concurrency_slot` = '1' while it holds a slot: from its
-- admission until it ends. The key's holders are a set, its waiting runs a list (FIFO),
-- both in the run's shard (a key's runs all live in one shard).

-- How many runs hold a slot of `holders`. Only when that reaches `limit`, members whose
-- run ended or is gone are dropped first: every end releases its slot in the same
-- script, so this only repairs state damaged from outside (keys deleted by hand).
local function concurrency_holders(holders, limit)
  local n = redis.call('SCARD', holders)
  if n < limit then return n end
  local base = base_of(holders)
  for _, member in ipairs(redis.call('SMEMBERS', holders)) do
    local status = redis.call('HGET', key_run(base, member), 'status')
    if not status or is_terminal(status) then
      redis.call('SREM', holders, member)
      n = n - 1
    end
  end
  return n
end

-- Gives run `id` a slot of its key when one is free; true if it holds one now.
local function concurrency_admit(run, id, holders, limit)
  if concurrency_holders(holders, tonumber(limit)) >= tonumber(limit) then return false end
  redis.call('SADD', holders, id)
  redis.call('HSET', run, 'concurrency_slot', '1')
  return true
end

-- Puts run `id` at the end of its key's waiting list (the caller sets its status
-- `awaiting_concurrency`; it has no message, so it holds no worker slot).
local function concurrency_wait(run, id, waiting, now)
  redis.call('RPUSH', waiting, id)
  redis.call('HSET', run, 'concurrency_waiting_since', now)
end

-- A run that ends (`old` its status before) gives its slot back, and each freed slot goes
-- to the key's first waiting run, enqueued at once: its stream message wakes a worker,
-- nothing polls. A waiting run that ends (cancelled) leaves the list. Entries whose run no
-- longer waits (paused, cancelled, taken again) are skipped. Called only for a run with a
-- `concurrency_limit` (the caller's HMGET read it), so other runs pay nothing.
local function concurrency_release(run, id, old, now)
  local c = redis.call('HMGET', run, 'concurrency_limit', 'concurrency_slot', 'concurrency_key',
    'workflow', 'version')
  if not c[1] then return end
  local base = base_of(run)
  if not c[2] then
    if old == 'awaiting_concurrency' or old == 'paused' then
      redis.call('LREM', key_concurrency_waiting(base, c[4], c[5], c[3]), 1, id)
    end
    return
  end
  redis.call('HDEL', run, 'concurrency_slot')
  local holders = key_concurrency(base, c[4], c[5], c[3])
  redis.call('SREM', holders, id)
  local waiting = key_concurrency_waiting(base, c[4], c[5], c[3])
  local limit = tonumber(c[1])
  while redis.call('SCARD', holders) < limit do
    local next_id = redis.call('LPOP', waiting)
    if not next_id then break end
    local run_key = key_run(base, next_id)
    local w = redis.call('HMGET', run_key, 'status', 'concurrency_waiting_since')
    if w[1] == 'awaiting_concurrency' then
      redis.call('SADD', holders, next_id)
      requeue(run_key, next_id, key_stream(base, c[4], c[5]))
      redis.call('HSET', run_key, 'status', 'queued', 'concurrency_slot', '1',
        'concurrency_waited_ms', tostring(tonumber(now) - tonumber(w[2] or now)),
        'updated_at', now)
      redis.call('HDEL', run_key, 'concurrency_waiting_since')
      index_status(run_key, next_id, 'awaiting_concurrency', 'queued')
    end
  end
end

-- Creates a run (revision 0): enqueued in its stream, or scheduled on the timers when
-- `start_at` (ms, '' for now) is in the future, or (a version with `concurrency=`, its
-- `limit` not '') waiting for a slot of its concurrency `key` when none is free;
-- indexed by creation time, status, workflow and version. `priority`: '', nil or '0' for
-- none, else '1'..'100'.
local function create_run(run, stream, runs, timers, id, workflow, version, payload, now,
    start_at, timeout_ms, key, limit, priority)
  redis.call('HSET', run, 'id', id, 'workflow', workflow, 'version', version,
    'payload', payload, 'revision', 0, 'attempts', 0, 'created_at', now, 'updated_at', now)
  if not priority or priority == '' or priority == '0' then
    priority = false
  else
    redis.call('HSET', run, 'priority', priority)
  end
  local status = 'queued'
  local base = base_of(run)
  if limit and limit ~= '' then
    redis.call('HSET', run, 'concurrency_key', key, 'concurrency_limit', limit)
  end
  if start_at ~= '' and tonumber(start_at) > tonumber(now) then
    status = 'scheduled'
    redis.call('HSET', run, 'wake_at', start_at)
    redis.call('ZADD', timers, start_at, id)
  elseif limit and limit ~= '' and not concurrency_admit(run, id,
      key_concurrency(base, workflow, version, key), limit) then
    status = 'awaiting_concurrency'
    concurrency_wait(run, id, key_concurrency_waiting(base, workflow, version, key), now)
  else
    enqueue(run, id, stream, priority)
  end
  redis.call('HSET', run, 'status', status)
  if timeout_ms ~= '' then redis.call('HSET', run, 'timeout_ms', timeout_ms) end
  redis.call('ZADD', runs, now, id)
  index_status(run, id, nil, status)
  index_add(base, id, now, 'workflow', workflow)
  index_add(base, id, now, 'version', version)
end

-- Takes a run for execution: fences out any previous executor (revision + 1) and
-- returns all the run needs to replay: {'ok', revision, workflow, version, payload,
-- {address, record, ...}, errors, {event field, JSON, ...}, now (ms), started_at,
-- timeout_ms, trace, concurrency key, ms it waited for its concurrency slot (once, after
-- a wait; else '')}; or {'missing'}, {'ended', status}, {'not-runnable', status},
-- {'bad-run', why} (keys that are not hashes: a message naming something else; never an
-- error that would stop a batch). A run of a version with `concurrency=` that holds no
-- slot takes one, or waits for one: {'not-runnable', 'awaiting_concurrency'} (the caller
-- acks the message).
local function take(run, tasks, events, worker, message, now)
  for _, key in ipairs({run, tasks, events}) do
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'hash' and kind ~= 'none' then
      return {'bad-run', key .. ' is a ' .. kind .. ', not a hash'}
    end
  end
  local st = redis.call('HMGET', run, 'status', 'workflow', 'version', 'payload',
    'started_at', 'errors', 'timeout_ms', 'trace', 'id', 'concurrency_limit',
    'concurrency_slot', 'concurrency_key', 'concurrency_waited_ms')
  if not st[1] then return {'missing'} end
  if is_terminal(st[1]) then return {'ended', st[1]} end
  if st[1] ~= 'queued' and st[1] ~= 'running' then return {'not-runnable', st[1]} end
  if st[10] and not st[11] then
    local base = base_of(run)
    if not concurrency_admit(run, st[9], key_concurrency(base, st[2], st[3], st[12]),
        st[10]) then
      concurrency_wait(run, st[9], key_concurrency_waiting(base, st[2], st[3], st[12]), now)
      redis.call('HSET', run, 'status', 'awaiting_concurrency', 'updated_at', now)
      index_status(run, st[9], st[1], 'awaiting_concurrency')
      redis.call('HDEL', run, 'message')
      return {'not-runnable', 'awaiting_concurrency'}
    end
  end
  if st[13] then redis.call('HDEL', run, 'concurrency_waited_ms') end
  local rev = redis.call('HINCRBY', run, 'revision', 1)
  redis.call('HINCRBY', run, 'attempts', 1)
  redis.call('HSET', run, 'status', 'running', 'worker', worker, 'message', message,
    'updated_at', now)
  index_status(run, st[9], st[1], 'running')
  local started = st[5]
  if not started then
    started = now
    redis.call('HSET', run, 'started_at', now)
  end
  return {'ok', rev, st[2], st[3], st[4], redis.call('HGETALL', tasks), st[6] or '[]',
    redis.call('HGETALL', events), now, started, st[7] or '', st[8] or '', st[12] or '',
    st[13] or ''}
end

-- The best run waiting in `queue`: its id, score and held message, or nil. An entry
-- whose run does not wait any more is dropped (every transition out of `queued` drops
-- it already, so this is only a safety net).
local function best_waiting(base, queue)
  while true do
    local top = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
    if not top[1] then return nil end
    local st = redis.call('HMGET', key_run(base, top[1]), 'status', 'message')
    if st[1] == 'queued' and st[2] and is_held(st[2]) then
      return top[1], tonumber(top[2]), st[2]
    end
    redis.call('ZREM', queue, top[1])
  end
end

-- Takes the run that `message`, read from `stream` by `worker`, stands for: `id`, the
-- run it names ('' for a doorbell), unless a better run waits in the version's queue (a
-- priority, or none but earlier in the stream): then that one is taken, with its held
-- message (claimed for `worker` here), and `id` waits in the queue at its place in the
-- stream, so the backlog in the stream does not delay the better one. A doorbell takes the best waiting run
-- ({'spare'} if none: a run it rang for was cancelled). A message that is no longer its
-- run's while the run waits in the queue (a repeat of a take whose reply was lost) is
-- refused {'stale'}. Returns {stream, message, run id, take reply}: the message the
-- execution holds (heartbeats, ack) may be another than the one read.
local function take_next(base, stream, message, id, worker, now)
  local best, score, held_message
  if not is_held(message) then  -- (a held message is a claim: it is its run's)
    best, score, held_message = best_waiting(base, sibling(stream, 'queue'))
  end
  if id ~= '' then
    local run = key_run(base, id)
    if best then
      local st = redis.call('HMGET', run, 'status', 'message')
      if st[1] == 'queued' and st[2] ~= message then return {stream, message, id, {'stale'}} end
      if st[1] ~= 'queued' or score >= stream_place(message) then best = nil end
    end
    if not best then
      return {stream, message, id, take(run, key_tasks(base, id), key_events(base, id), worker,
        message, now)}
    end
    hold(run, id, stream, 0, message)
  end
  redis.call('XACK', stream, GROUP, message)
  redis.call('XDEL', stream, message)
  if not best then return {stream, message, '', {'spare'}} end
  redis.call('ZREM', sibling(stream, 'queue'), best)
  local held = sibling(stream, 'held')
  if #redis.call('XCLAIM', held, GROUP, worker, 0, held_message, 'FORCE', 'JUSTID') == 0 then
    held_message = redis.call('XADD', held, '1-*', 'run', best)  -- it was lost: a new one
    redis.call('XCLAIM', held, GROUP, worker, 0, held_message, 'FORCE', 'JUSTID')
  end
  return {held, held_message, best, take(key_run(base, best), key_tasks(base, best),
    key_events(base, best), worker, held_message, now)}
end
