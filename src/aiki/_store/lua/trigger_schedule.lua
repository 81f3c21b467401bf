--- trigger_schedule: start a schedule's run now, outside its timetable (paused or not);
--- its next occurrence is unchanged. The run id is the caller's (derived from the
--- schedule and the time), so a repeated call starts nothing more.
-- KEYS: schedules, last_run, run, stream, runs
-- ARGV: schedule, id, workflow, version, payload, timeout_ms, priority, concurrency_key, concurrency_limit
-- Returns 1 (started) or 0 (that run exists already).
--- @include "lib"
local schedules, last_run, run, stream, runs = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local schedule, id, workflow, version, payload, timeout_ms, priority, concurrency_key,
  concurrency_limit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8],
  ARGV[9]

if redis.call('HEXISTS', schedules, schedule) == 0 then
  return redis.error_reply('MISSING schedule ' .. schedule)
end
if redis.call('EXISTS', run) == 1 then return 0 end
local now = now_ms(run)
create_run(run, stream, runs, nil, id, workflow, version, payload, now, '', timeout_ms,
  concurrency_key, concurrency_limit, priority)
redis.call('HSET', run, 'schedule', schedule, 'occurrence', now, 'triggered', 1)
redis.call('HSET', last_run, schedule, id)
return 1
