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
drop_message(stream, group, message, id)
local now = now_ms(run)
requeue(run, id, stream)
redis.call('HINCRBY', run, 'revision', 1)
redis.call('HSET', run, 'status', 'queued', 'updated_at', now)
index_status(run, id, 'running', 'queued')
return redis.call('HGET', run, 'message')
