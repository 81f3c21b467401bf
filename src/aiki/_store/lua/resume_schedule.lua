--- resume_schedule: a paused schedule goes on from its next occurrence after now
--- (computed by the caller, who knows cron); occurrences missed while paused are not
--- fired. A schedule that was not paused is left as it is.
-- KEYS: schedules, due, paused
-- ARGV: schedule, next
-- Returns 'resumed' or 'active' (it was not paused).
local schedules, due, paused = KEYS[1], KEYS[2], KEYS[3]
local schedule, next_at = ARGV[1], ARGV[2]

if redis.call('HEXISTS', schedules, schedule) == 0 then
  return redis.error_reply('MISSING schedule ' .. schedule)
end
if redis.call('HDEL', paused, schedule) == 0 then return 'active' end
redis.call('ZADD', due, next_at, schedule)
return 'resumed'
