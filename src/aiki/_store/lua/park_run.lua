--- park_run: suspend an execution.
-- KEYS: run, tasks, stream, timers, events, child
-- ARGV: revision, message, group, status, wake_at, errors, id, event, events_seen, sleep_address, ...drop_tasks
-- Acks the execution's message and either enqueues the run again at once (queued) or
-- parks it (sleeping, awaiting_*), with a durable timer when `wake_at` (ms) is not ''.
-- `errors` ('' to keep) replaces the attempt errors; `drop_tasks` are task addresses to
-- forget; `child` is the run itself when there is no child. What the run waits for may
-- have happened since the execution looked (an event sent, a child ended, the sleep
-- woken): then it is enqueued at once instead, so no wake-up is lost.
--- @include "lib"
local run, tasks, stream, timers, events, child =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local revision, message, group, status, wake_at, errors, id, event, events_seen,
  sleep_address =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]

local _, refused = fence(run, revision)
if refused then return refused end
drop_message(stream, group, message, id)
for i = 11, #ARGV do redis.call('HDEL', tasks, ARGV[i]) end
if errors ~= '' then redis.call('HSET', run, 'errors', errors) end
redis.call('HINCRBY', run, 'revision', 1)
if status == 'awaiting_event' and event ~= '' then
  local count = redis.call('HGET', events, '#n:' .. event)
  if count and tonumber(count) > tonumber(events_seen) then status = 'queued' end
end
if status == 'sleeping' and sleep_address ~= '' then
  -- woken early (handle.wakeup) while this execution was still running
  local rec = redis.call('HGET', tasks, sleep_address)
  if rec and string.find(rec, '"status":"completed"', 1, true) then status = 'queued' end
end
if status == 'awaiting_child_workflow' and child ~= run then
  local child_status = redis.call('HGET', child, 'status')
  if not child_status or is_terminal(child_status) then status = 'queued' end
end
local now = now_ms(run)
if status == 'queued' then
  requeue(run, id, stream)
  redis.call('HSET', run, 'status', 'queued', 'updated_at', now)
  index_status(run, id, 'running', 'queued')
  redis.call('HDEL', run, 'wake_at')
  redis.call('ZREM', timers, id)
else
  redis.call('HSET', run, 'status', status, 'updated_at', now)
  index_status(run, id, 'running', status)
  redis.call('HDEL', run, 'message')
  if wake_at ~= '' then
    redis.call('HSET', run, 'wake_at', wake_at)
    redis.call('ZADD', timers, wake_at, id)
  else
    redis.call('HDEL', run, 'wake_at')
  end
end
return status
