--- requeue_dead_letter: give a dead-lettered run its message back, once the reason it was
--- dead-lettered is fixed. A run that was taken but never executed (no worker code for
--- its version, unreadable data) is left queued or running with no message: it gets a
--- new one, and a revision bump fences out whatever took it. A run whose message is
--- still in its stream is left alone (a repeated requeue adds nothing).
-- KEYS: run, stream
-- ARGV: id
-- Returns 'queued' or 'already-queued'.
--- @include "lib"
local run, stream = KEYS[1], KEYS[2]
local id = ARGV[1]

local st = redis.call('HMGET', run, 'status', 'message')
if not st[1] then return redis.error_reply('MISSING run') end
if is_terminal(st[1]) then return redis.error_reply('ENDED run ' .. id .. ' is ' .. st[1]) end
if st[1] ~= 'queued' and st[1] ~= 'running' then
  return redis.error_reply('CONFLICT run ' .. id .. ' is ' .. st[1] ..
    ': it waits for its timer, event or child, not for a message')
end
if st[2] then
  local where = is_held(st[2]) and sibling(stream, 'held') or stream
  if #redis.call('XRANGE', where, st[2], st[2]) > 0 then return 'already-queued' end
  if is_held(st[2]) then redis.call('ZREM', sibling(stream, 'queue'), id) end
end
redis.call('HINCRBY', run, 'revision', 1)
local now = now_ms(run)
requeue(run, id, stream)
redis.call('HSET', run, 'status', 'queued', 'updated_at', now)
index_status(run, id, st[1], 'queued')
redis.call('HDEL', run, 'worker')
return 'queued'
