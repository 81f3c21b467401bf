--- pause_run: a paused run is not picked up until resumed: its message is dropped, its
--- timer kept aside, and a running execution is fenced out and told to stop.
-- KEYS: run, stream, timers
-- ARGV: group, control_channel, id
--- @include "lib"
local run, stream, timers = KEYS[1], KEYS[2], KEYS[3]
local group, control_channel, id = ARGV[1], ARGV[2], ARGV[3]

local st = redis.call('HMGET', run, 'status', 'message')
if not st[1] then return redis.error_reply('MISSING run') end
if is_terminal(st[1]) then return redis.error_reply('ENDED run is ' .. st[1]) end
if st[1] == 'paused' then return 'paused' end
redis.call('HINCRBY', run, 'revision', 1)
redis.call('HSET', run, 'status', 'paused', 'paused_from', st[1], 'updated_at', now_ms(run))
index_status(run, id, st[1], 'paused')
if st[2] then
  drop_message(stream, group, st[2], id)
  redis.call('HDEL', run, 'message')
end
redis.call('ZREM', timers, id)
redis.call('PUBLISH', control_channel, '{"action":"pause","run":"' .. id .. '"}')
return 'paused'
