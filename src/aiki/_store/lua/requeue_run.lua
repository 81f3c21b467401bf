--- requeue_run: an execution that stops without an outcome (worker shutting down) hands
--- the run straight back to the queue instead of waiting for a claim timeout.
-- KEYS: run, stream
-- ARGV: revision, message, group
--- @include "lib"
local run, stream = KEYS[1], KEYS[2]
local revision, message, group = ARGV[1], ARGV[2], ARGV[3]

local _, refused = fence(run, revision)
if refused then return refused end
local id = redis.call('HGET', run, 'id')
redis.call('XACK', stream, group, message)
redis.call('XDEL', stream, message)
local msg = redis.call('XADD', stream, '*', 'run', id)
redis.call('HINCRBY', run, 'revision', 1)
redis.call('HSET', run, 'status', 'queued', 'message', msg, 'updated_at', now_ms(run))
index_status(run, id, 'running', 'queued')
return msg
