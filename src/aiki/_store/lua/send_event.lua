--- send_event: store an event for a run (even before anyone waits for it).
-- KEYS: run, events, stream, timers
-- ARGV: name, data, reference_id, id, max_events
-- `data` is JSON; a repeated `reference_id` is stored once (and stays a duplicate, not an
-- error, after the run ended). A run waiting for an event goes back to its stream.
--- @include "lib"
local run, events, stream, timers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local name, data, reference_id, id, max_events = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local st = redis.call('HMGET', run, 'status')
if not st[1] then return redis.error_reply('MISSING run') end
-- A repeated reference id is a duplicate even once the run has ended: a webhook retried
-- after its first delivery ended the run must not be told it failed.
if reference_id ~= '' and redis.call('HEXISTS', events, 'ref:' .. reference_id) == 1 then
  return 'duplicate'
end
if is_terminal(st[1]) then return redis.error_reply('ENDED run is ' .. st[1]) end
if tonumber(redis.call('HGET', events, '#count') or '0') >= tonumber(max_events) then
  return redis.error_reply('LIMIT run already has ' .. max_events .. ' events')
end
redis.call('HINCRBY', events, '#count', 1)
if reference_id ~= '' then redis.call('HSET', events, 'ref:' .. reference_id, '1') end
local now = now_ms(run)
-- The event is stored as the JSON it came as (never decoded here, so numbers and empty
-- arrays keep their exact form): field e:<name>#<n>, n counted by #n:<name>.
local n = redis.call('HINCRBY', events, '#n:' .. name, 1) - 1
redis.call('HSET', events, 'e:' .. name .. '#' .. n, '{"data":' .. data ..
  ',"reference_id":' .. cjson.encode(reference_id) .. ',"at":' .. now .. '}')
if st[1] == 'awaiting_event' then
  requeue(run, id, stream)
  redis.call('HSET', run, 'status', 'queued', 'updated_at', now)
  index_status(run, id, 'awaiting_event', 'queued')
  redis.call('ZREM', timers, id)
end
return 'stored'
