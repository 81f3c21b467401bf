--- finish_run: record a run's outcome, ack its message and notify waiters; its
--- concurrency slot (if any) goes to the next waiting run of its key.
-- KEYS: run, stream, tasks
-- ARGV: revision, status, field, value, message, group, channel, id, base, address, record
-- `status` is completed|failed, `field` result|error, `value` JSON; `base` is the run's
-- shard key base. `address` and `record` ('' for none): the workflow's last task record,
-- held back by the executor (aiki._context: sequential code that ended right after it)
-- and written here, under the same fence, instead of by a record_task of its own.
--- @include "lib"
local run, stream, tasks = KEYS[1], KEYS[2], KEYS[3]
local revision, status, field, value, message, group, channel, id, base, address, record =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10],
  ARGV[11]

local st, refused = fence(run, revision, 'parent', 'concurrency_limit')
if refused then return refused end
if address ~= '' then redis.call('HSET', tasks, address, record) end
local now = now_ms(run)
redis.call('HSET', run, 'status', status, field, value, 'ended_at', now, 'updated_at', now)
index_status(run, id, 'running', status)
if st[4] then concurrency_release(run, id, 'running', now) end
redis.call('HDEL', run, 'message')
drop_message(stream, group, message, id)
redis.call('PUBLISH', channel, '{"id":"' .. id .. '","status":"' .. status ..
  '","' .. field .. '":' .. value .. '}')
wake_parent(base, st[3], now)
retain(base, id, now)
return 1
