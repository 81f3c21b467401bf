--- task_attempt: record an attempt of a task with a deadline, and keep that deadline.
-- KEYS: run, tasks, deadlines
-- ARGV: revision, address, record, member, deadline
-- A task declared with timeout= or heartbeat_timeout= records each attempt `running`
-- (fenced like record_task) with its deadline (ms) in the shard's task-deadlines set
-- (member `<run id>|<revision>|<address>`); heartbeats move the deadline; the attempt's
-- outcome is recorded with `deadline` '' and drops it. A deadline that passes while the
-- attempt still looks running is reclaimed by fire_timers: its worker is stuck or gone.
--- @include "lib"
local run, tasks, deadlines = KEYS[1], KEYS[2], KEYS[3]
local revision, address, record, member, deadline =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local _, refused = fence(run, revision)
if refused then
  redis.call('ZREM', deadlines, member)
  return refused
end
redis.call('HSET', tasks, address, record)
redis.call('HSET', run, 'updated_at', now_ms(run))
if deadline == '' then
  redis.call('ZREM', deadlines, member)
else
  redis.call('ZADD', deadlines, deadline, member)
end
return 1
