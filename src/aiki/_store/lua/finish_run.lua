--- finish_run: record a run's outcome, ack its message and notify waiters; its
--- concurrency slot (if any) goes to the next waiting run of its key.
-- KEYS: run, stream
-- ARGV: revision, status, field, value, message, group, channel, id, base
-- `status` is completed|failed, `field` result|error, `value` JSON; `base` is the run's
-- shard key base.
--- @include "lib"
local run, stream = KEYS[1], KEYS[2]
local revision, status, field, value, message, group, channel, id, base =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]

local st, refused = fence(run, revision, 'parent', 'concurrency_limit')
if refused then return refused end
local now = now_ms(run)
redis.call('HSET', run, 'status', status, field, value, 'ended_at', now, 'updated_at', now)
index_status(run, id, 'running', status)
if st[4] then concurrency_release(run, id, 'running', now) end
redis.call('HDEL', run, 'message')
redis.call('XACK', stream, group, message)
redis.call('XDEL', stream, message)
redis.call('PUBLISH', channel, '{"id":"' .. id .. '","status":"' .. status ..
  '","' .. field .. '":' .. value .. '}')
wake_parent(base, st[3], now)
retain(base, id, now)
return 1
