--- wake_sleep: end a sleep early: its record is marked done and a sleeping run is
--- enqueued. Returns how many sleeps were woken.
-- KEYS: run, tasks, stream, timers
-- ARGV: name, id
--- @include "lib"
local run, tasks, stream, timers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local name, id = ARGV[1], ARGV[2]

local st = redis.call('HMGET', run, 'status')
if not st[1] then return redis.error_reply('MISSING run') end
local prefix = 'sleep:' .. name .. ':'
local records = redis.call('HGETALL', tasks)
local woken = 0
for i = 1, #records, 2 do
  if string.sub(records[i], 1, #prefix) == prefix and
     string.match(string.sub(records[i], #prefix + 1), '^%d+$') then
    local rec = cjson.decode(records[i + 1])
    if rec.status == 'sleeping' then
      rec.status = 'completed'
      rec.woken_early = true
      redis.call('HSET', tasks, records[i], cjson.encode(rec))
      woken = woken + 1
    end
  end
end
if woken > 0 and st[1] == 'sleeping' then
  local now = now_ms(run)
  requeue(run, id, stream)
  redis.call('HSET', run, 'status', 'queued', 'updated_at', now)
  index_status(run, id, 'sleeping', 'queued')
  redis.call('HDEL', run, 'wake_at')
  redis.call('ZREM', timers, id)
end
return woken
