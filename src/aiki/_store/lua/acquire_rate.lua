--- acquire_rate: take `cost` units from a rate limit (GCRA), or say how long to wait.
-- KEYS: bucket
-- ARGV: interval, burst, cost, max_wait
-- The bucket holds one number, the limit's theoretical arrival time (TAT, ms): when the
-- units handed out so far would all have been used at the steady rate (`interval` ms a
-- unit). A call may go when TAT + cost * interval - burst * interval is not later than
-- now; when that moment is at most `max_wait` ms away the units are reserved (TAT
-- moves on) and the caller waits until then. Returns {reserved (1|0), wait (ms, as a
-- string), granted (now + wait: the moment the call may go, ms since the epoch on
-- Redis's clock, as a string)}: with 0, nothing was taken and the caller asks again
-- later.
--- @include "lib"
local bucket = KEYS[1]
local interval, burst, cost, max_wait =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local tat = tonumber(redis.call('GET', bucket) or '0')
if tat < now then tat = now end
local new_tat = tat + cost * interval
local wait = new_tat - burst * interval - now
if wait > max_wait then
  return {0, string.format('%.3f', wait), string.format('%.3f', now + wait)}
end
redis.call('SET', bucket, string.format('%.3f', new_tat), 'PX',
  math.ceil(new_tat - now) + 1000)
if wait < 0 then wait = 0 end
return {1, string.format('%.3f', wait), string.format('%.3f', now + wait)}
