--- pause_schedule: a paused schedule fires nothing until resumed: its next occurrence is
--- dropped (a daemon that already read it finds it gone: fire_schedule fires only the
--- occurrence still current) and the pause is remembered.
-- KEYS: schedules, due, paused
-- ARGV: schedule
-- Returns 'paused' (also when it already was).
--- @include "lib"
local schedules, due, paused = KEYS[1], KEYS[2], KEYS[3]
local schedule = ARGV[1]

if redis.call('HEXISTS', schedules, schedule) == 0 then
  return redis.error_reply('MISSING schedule ' .. schedule)
end
if redis.call('HEXISTS', paused, schedule) == 1 then return 'paused' end
redis.call('ZREM', due, schedule)
redis.call('HSET', paused, schedule, now_ms(schedules))
return 'paused'
