--- claim_worker: write a worker's registry entry unless ANOTHER live instance holds the
--- id (an entry with a different instance token whose heartbeat is younger than
--- stale_ms). Returns nil when claimed, else the holder's entry (JSON) as stored. Atomic,
--- so two workers starting with one id at the same moment cannot both pass.
-- KEYS: workers
-- ARGV: id, instance, now_ms, stale_ms, entry
local workers = KEYS[1]
local id, instance = ARGV[1], ARGV[2]
local now, stale = tonumber(ARGV[3]), tonumber(ARGV[4])

local raw = redis.call('HGET', workers, id)
if raw then
  local ok, held = pcall(cjson.decode, raw)
  if ok and type(held) == 'table' and held.instance ~= instance then
    local beat = tonumber(held.last_heartbeat_ms) or 0
    if now - beat < stale then return raw end
  end
end
redis.call('HSET', workers, id, ARGV[5])
return false
