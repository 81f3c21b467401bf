--- start_run: create a run and enqueue it (or schedule it for `start_at`).
-- KEYS: run, stream, runs, reference, children, timers
-- ARGV: id, workflow, version, payload, reference_id, on_conflict, parent_id, start_at, timeout_ms, sensitive, trace, concurrency_key, concurrency_limit, digests, priority
-- `start_at` is a time (ms), '+<ms>' for that long from now on this shard's clock (a
-- client's clock may be off, and a test environment's is virtual), or '' for now.
-- The reference and children keys are only touched with a reference id / a parent (they
-- are still real key names under the prefix, so a prefix-limited ACL allows the call).
-- Returns {run id, 1} when created, {existing run id, 0} for an idempotent repeat (same
-- reference id, or a child run that a replay starts again). `trace` is the starter's
-- trace context (W3C headers as JSON, or ''), continued by whichever worker executes it.
-- `concurrency_limit` ('' for none) and `concurrency_key` ('' for the version's shared
-- key): a run with no free slot for its key waits `awaiting_concurrency` (lib.lua).
-- `digests`: how a repeated start with the same reference id recognises the same
-- payload. '' means the SHA-1 of the stored payload. A starter with codecs
-- (aiki.codecs) stores a payload that differs on every start (a fresh nonce), so it
-- sends digests of the plaintext instead, space-separated: keyed ones (HMAC under each
-- of its encryption keys, the current key's first) or, without encryption, the SHA-1 of
-- the plaintext JSON. The first is stored; a stored digest equal to any of them is the
-- same payload (so a start under a new key meets one made under the old).
-- `priority`: '0'..'100', or '' for a child run to inherit its parent's (none: 0).
--- @include "lib"
local run, stream, runs, reference, children, timers =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, workflow, version, payload, reference_id, on_conflict, parent_id, start_at,
  timeout_ms, sensitive, trace, concurrency_key, concurrency_limit, digests, priority =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10],
  ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15]

local ref_value = nil
if reference_id ~= '' then
  local digest = redis.sha1hex(payload)
  if digests ~= '' then digest = string.match(digests, '^%S+') end
  local existing = redis.call('GET', reference)
  if existing then
    local sep = string.find(existing, ':', 1, true)
    local existing_id = string.sub(existing, 1, sep - 1)
    local stored = string.sub(existing, sep + 1)
    local same = stored == digest or (digests ~= '' and
      string.find(' ' .. digests .. ' ', ' ' .. stored .. ' ', 1, true) ~= nil)
    if same or on_conflict == 'return_existing' then
      return {existing_id, 0}
    end
    return redis.error_reply('CONFLICT run ' .. existing_id ..
      ' already has reference id ' .. reference_id .. ' with a different payload')
  end
  ref_value = id .. ':' .. digest
end
if redis.call('EXISTS', run) == 1 then
  if parent_id ~= '' then return {id, 0} end
  return redis.error_reply('EXISTS run ' .. id .. ' already exists')
end
local now = now_ms(run)
if string.sub(start_at, 1, 1) == '+' then
  start_at = string.format('%d', now + tonumber(string.sub(start_at, 2)))
end
if priority == '' and parent_id ~= '' then
  priority = redis.call('HGET', key_run(base_of(run), parent_id), 'priority') or ''
end
create_run(run, stream, runs, timers, id, workflow, version, payload, now, start_at,
  timeout_ms, concurrency_key, concurrency_limit, priority)
if sensitive == '1' then redis.call('HSET', run, 'sensitive', '1') end
if trace ~= '' then redis.call('HSET', run, 'trace', trace) end
if ref_value then
  redis.call('HSET', run, 'reference_id', reference_id)
  redis.call('SET', reference, ref_value)
  index_add(base_of(run), id, now, 'reference', reference_id)
end
if parent_id ~= '' then
  redis.call('HSET', run, 'parent', parent_id)
  redis.call('SADD', children, id)
end
return {id, 1}
