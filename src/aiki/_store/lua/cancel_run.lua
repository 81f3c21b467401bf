--- cancel_run: end a run `cancelled` whatever it was doing (fencing out a running
--- executor) and return its children so the caller cancels them too.
-- KEYS: run, stream, timers, children
-- ARGV: reason, group, ended_channel, control_channel, id, base
-- `reason` is a JSON string; `base` the run's shard key base. Returns {status, children};
-- a run that already ended keeps its status.
--- @include "lib"
local run, stream, timers, children = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local reason, group, ended_channel, control_channel, id, base =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local st = redis.call('HMGET', run, 'status', 'message', 'parent', 'concurrency_limit')
if not st[1] then return redis.error_reply('MISSING run') end
if is_terminal(st[1]) then return {st[1], {}} end
local now = now_ms(run)
local err = '{"type":"Cancelled","message":' .. reason .. '}'
redis.call('HINCRBY', run, 'revision', 1)
redis.call('HSET', run, 'status', 'cancelled', 'error', err, 'ended_at', now,
  'updated_at', now)
index_status(run, id, st[1], 'cancelled')
if st[4] then concurrency_release(run, id, st[1], now) end
if st[2] then
  drop_message(stream, group, st[2], id)
  redis.call('HDEL', run, 'message')
end
redis.call('ZREM', timers, id)
redis.call('PUBLISH', ended_channel, '{"id":"' .. id .. '","status":"cancelled","error":' ..
  err .. '}')
redis.call('PUBLISH', control_channel, '{"action":"cancel","run":"' .. id .. '"}')
wake_parent(base, st[3], now)
retain(base, id, now)
return {'cancelled', redis.call('SMEMBERS', children)}
