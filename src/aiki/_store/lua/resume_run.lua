--- resume_run: a resumed run waits for its timer again if it had one (retry delay,
--- delayed start); otherwise it is enqueued and its replay finds out what it still
--- waits for (a sleep is re-checked by its replay: it may have been woken while paused).
-- KEYS: run, stream, timers
-- ARGV: id
--- @include "lib"
local run, stream, timers = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]

local st = redis.call('HMGET', run, 'status', 'paused_from', 'wake_at')
if not st[1] then return redis.error_reply('MISSING run') end
if st[1] ~= 'paused' then return st[1] end
local now = now_ms(run)
redis.call('HDEL', run, 'paused_from')
if st[3] and tonumber(st[3]) > tonumber(now) and
   (st[2] == 'awaiting_retry' or st[2] == 'scheduled' or st[2] == 'awaiting_rate_limit') then
  redis.call('HSET', run, 'status', st[2], 'updated_at', now)
  index_status(run, id, 'paused', st[2])
  redis.call('ZADD', timers, st[3], id)
  return st[2]
end
requeue(run, id, stream)
redis.call('HSET', run, 'status', 'queued', 'updated_at', now)
index_status(run, id, 'paused', 'queued')
return 'queued'
