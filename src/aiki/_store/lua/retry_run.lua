--- retry_run: run a failed or cancelled run again, keeping what it recorded. Its
--- completed steps stay memoized (a replay returns their results without running them);
--- the records of the failed task (and of a wait on a child that did not complete) are
--- dropped so the replay runs them again; the failure is appended to the run's attempt
--- errors with `retried_at`: the new execution is the next workflow-level attempt.
-- KEYS: run, tasks, stream, timers, ended
-- ARGV: id, base, ended_channel
-- `base` is the run's shard key base. Returns the number of step records dropped.
-- The run-ended channel is told the run is open again ({"id", "reopened": true}), so a
-- listener drops an end it was told before (a later wait waits for the new one).
--- @include "lib"
local run, tasks, stream, timers, ended = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, base, ended_channel = ARGV[1], ARGV[2], ARGV[3]

local st = redis.call('HMGET', run, 'status', 'error', 'errors', 'started_at', 'ended_at')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] ~= 'failed' and st[1] ~= 'cancelled' then
  return redis.error_reply('CONFLICT run is ' .. st[1] .. ': only a failed or cancelled run can be retried')
end
local now = now_ms(run)

-- The attempt that ended, as one entry of the run's attempt errors.
local ok, entry = pcall(cjson.decode, st[2] or '{}')
if not ok or type(entry) ~= 'table' then entry = {type = 'Unknown', message = st[2]} end
entry.attempts = nil  -- the run's error repeats the earlier entries: keep the list flat
entry.ended_as = st[1]
entry.retried_at = tonumber(now)
entry.started_at = tonumber(st[4])
entry.ended_at = tonumber(st[5])
local errors = st[3]
if not errors or string.match(errors, '^%s*%[%s*%]%s*$') then
  errors = '[' .. cjson.encode(entry) .. ']'
else
  errors = string.gsub(errors, '%]%s*$', '') .. ',' .. cjson.encode(entry) .. ']'
end

local dropped = 0
local records = redis.call('HGETALL', tasks)
for i = 1, #records, 2 do
  local good, rec = pcall(cjson.decode, records[i + 1])
  if good and type(rec) == 'table' and (rec.status == 'failed' or
      (rec.kind == 'child-wait' and rec.child_status ~= 'completed')) then
    redis.call('HDEL', tasks, records[i])
    dropped = dropped + 1
  end
end

redis.call('HINCRBY', run, 'revision', 1)
redis.call('HDEL', run, 'error', 'result', 'ended_at', 'started_at', 'wake_at', 'paused_from',
  'worker')
requeue(run, id, stream)
redis.call('HSET', run, 'status', 'queued', 'errors', errors, 'updated_at', now)
index_status(run, id, st[1], 'queued')
redis.call('ZREM', timers, id)
redis.call('ZREM', ended, id)
-- Retention had set the run's keys to expire when it ended: it lives on now.
for _, key in ipairs({run, tasks, key_events(base, id), key_children(base, id)}) do
  redis.call('PERSIST', key)
end
redis.call('PUBLISH', ended_channel, '{"id":"' .. id .. '","reopened":true}')
return dropped
