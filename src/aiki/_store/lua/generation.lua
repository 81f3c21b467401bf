--- generation: the deployment's generation token, written (as the candidate) when the
--- key is missing. Every process remembers the token it saw; a different one later means
--- Redis lost the deployment's state (FLUSHALL, a restart without persistence, a failover
--- to an empty replica) and whatever the process had registered must be written again.
-- KEYS: key
-- ARGV: candidate
local key, candidate = KEYS[1], ARGV[1]

local current = redis.call('GET', key)
if current then return current end
redis.call('SET', key, candidate)
return candidate
