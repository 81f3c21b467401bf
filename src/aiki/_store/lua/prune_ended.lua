--- prune_ended: forget the runs of a shard that ended before `cutoff` (their keys have
--- expired with the retention): drop them from the runs index, the status indexes and
--- every index their `indexed` set names. A run listed in `ended` that runs again is
--- only dropped from `ended`.
-- KEYS: ended, runs
-- ARGV: base, cutoff, limit
-- Returns how many entries of `ended` were handled (fewer than `limit`: none left).
--- @include "lib"
local ended, runs = KEYS[1], KEYS[2]
local base, cutoff, limit = ARGV[1], ARGV[2], ARGV[3]

local ids = redis.call('ZRANGE', ended, '-inf', cutoff, 'BYSCORE', 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local status = redis.call('HGET', key_run(base, id), 'status')
  if not status or is_terminal(status) then
    redis.call('ZREM', runs, id)
    for _, s in ipairs({'completed', 'failed', 'cancelled'}) do
      redis.call('ZREM', key_index(base, 'status', s), id)
    end
    local indexed = key_indexed(base, id)
    for _, index in ipairs(redis.call('SMEMBERS', indexed)) do
      redis.call('ZREM', index, id)
    end
    redis.call('DEL', indexed)
  end
  redis.call('ZREM', ended, id)
end
return #ids
