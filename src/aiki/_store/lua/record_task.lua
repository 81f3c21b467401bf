--- record_task: an executor records a task's outcome, fenced by its revision.
-- KEYS: run, tasks
-- ARGV: revision, address, record
--- @include "lib"
local run, tasks = KEYS[1], KEYS[2]
local revision, address, record = ARGV[1], ARGV[2], ARGV[3]

local _, refused = fence(run, revision)
if refused then return refused end
redis.call('HSET', tasks, address, record)
redis.call('HSET', run, 'updated_at', now_ms(run))
return 1
