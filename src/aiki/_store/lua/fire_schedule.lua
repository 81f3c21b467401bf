--- fire_schedule: fire one occurrence of a schedule exactly once, however many servers
--- try: only the caller that still sees the occurrence it computed from moves the
--- schedule on.
-- KEYS: due, last_run, run, stream, runs
-- ARGV: schedule, occurrence, following, action, id, workflow, version, payload, timeout_ms, priority, concurrency_key, concurrency_limit
-- `occurrence` is the time (ms) the caller saw as due, `following` the next one (or ''),
-- `action` start|skip. Returns 0 (someone else fired it), 1 (run started), 2 (skipped,
-- or the run exists already).
--- @include "lib"
local due, last_run, run, stream, runs = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local schedule, occurrence, following, action, id, workflow, version, payload, timeout_ms,
  priority, concurrency_key, concurrency_limit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]

local cur = redis.call('ZSCORE', due, schedule)
if not cur or tonumber(cur) ~= tonumber(occurrence) then return 0 end
if following == '' then
  redis.call('ZREM', due, schedule)
else
  redis.call('ZADD', due, following, schedule)
end
if action ~= 'start' or redis.call('EXISTS', run) == 1 then return 2 end
create_run(run, stream, runs, nil, id, workflow, version, payload, now_ms(run), '',
  timeout_ms, concurrency_key, concurrency_limit, priority)
redis.call('HSET', run, 'schedule', schedule, 'occurrence', occurrence)
redis.call('HSET', last_run, schedule, id)
return 1
