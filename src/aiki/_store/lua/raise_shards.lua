--- raise_shards: raise the deployment's shard count, never lower it (runs in higher
--- shards must stay readable).
-- KEYS: key
-- ARGV: shards
local key, wanted = KEYS[1], tonumber(ARGV[1])

local current = tonumber(redis.call('GET', key) or '1')
if wanted > current then redis.call('SET', key, ARGV[1]) end
return math.max(current, wanted)
