--- read_and_take: a worker with a backlog reads new messages AND takes their runs in
--- one call.
-- KEYS: ...streams
-- ARGV: group, consumer, count, base
-- The streams are all in the shard whose key base is `base`. Returns
-- {{stream, message id, run id, take reply}, ...} (see `take_next`: the stream and message
-- the execution holds, maybe not the one read); a message with neither a run nor a
-- doorbell field comes as {stream, message id, '', {'no-run'}, its fields} (for its dead
-- letter). Never blocks (a worker without a backlog waits in a blocking XREADGROUP).
--- @include "lib"
local group, consumer, count, base = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local args = {'GROUP', group, consumer, 'COUNT', count, 'STREAMS'}
for i = 1, #KEYS do args[#args + 1] = KEYS[i] end
for _ = 1, #KEYS do args[#args + 1] = '>' end
local got = redis.call('XREADGROUP', unpack(args))
if not got then return {} end
local now = now_ms(base)
local out = {}
for _, s in ipairs(got) do
  for _, entry in ipairs(s[2]) do
    local id, doorbell = '', false
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'run' then id = fields[i + 1] end
      if fields[i] == 'doorbell' then doorbell = true end
    end
    if id ~= '' or doorbell then
      out[#out + 1] = take_next(base, s[1], entry[1], id, consumer, now)
    else
      out[#out + 1] = {s[1], entry[1], '', {'no-run'}, fields}
    end
  end
end
return out
