--- heartbeat: reset the idle time of the given messages that this consumer still owns;
--- returns the ids now pending with ANOTHER consumer (claimed away). An id pending with
--- nobody was acked: its execution is finishing (or was cancelled), which is not a loss.
-- KEYS: stream
-- ARGV: group, consumer, ...ids
local stream = KEYS[1]
local group, consumer = ARGV[1], ARGV[2]

local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if #p > 0 then
    if p[1][2] == consumer then
      redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i], 'JUSTID')
    else
      table.insert(lost, ARGV[i])
    end
  end
end
return lost
