--- clock: read a shard's clock, or move its virtual clock forward (time-skipping test
--- environments only: aiki/_time_skipping.py).
-- KEYS: offset
-- ARGV: target, offset_ms
-- `offset` is the shard's clock-offset key. With `target` (ms) the offset grows so that
-- the shard's clock reads at least `target`; with `offset_ms` it grows to at least that
-- (copying shard 0's offset to the other shards). The offset never shrinks: a clock that
-- went back would fire nothing and confuse every recorded time. Returns {now (ms),
-- offset (ms)}, read after the change.
--- @include "lib"
local offset = KEYS[1]
local target, offset_ms = ARGV[1], ARGV[2]

local current = tonumber(redis.call('GET', offset) or '0')
local wanted = current
if target ~= '' then
  local t = redis.call('TIME')
  wanted = tonumber(target) - (t[1] * 1000 + math.floor(t[2] / 1000))
elseif offset_ms ~= '' then
  wanted = tonumber(offset_ms)
end
if wanted > current then
  current = wanted
  redis.call('SET', offset, string.format('%d', current))
end
return {now_ms(offset), string.format('%d', current)}
