--- fire_timers: move every run of a shard whose timer is due back into its stream, and
--- reclaim runs whose task attempt passed its deadline.
-- KEYS: timers, task_deadlines
-- ARGV: base, limit, group, control_channel
-- ZREM decides who fires a timer, so several servers running this at once never
-- enqueue a run twice. A task deadline (see task_attempt) that passed while its run is
-- still running at the attempt's revision and the attempt is still recorded `running`
-- means the worker is stuck or gone: the run goes back to its stream at once (its
-- revision moves on, so the old executor can write nothing more; a control message asks
-- it to stop), and the next execution counts the attempt as timed out. Returns {fired,
-- due, next due (ms) or '', now (ms)}: the caller may sleep until the next due time,
-- measured on Redis's clock (not its own).
--- @include "lib"
local timers, task_deadlines = KEYS[1], KEYS[2]
local base, limit, group, control_channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local parked = {awaiting_retry = true, sleeping = true, scheduled = true,
  awaiting_event = true, awaiting_child_workflow = true, awaiting_rate_limit = true}
local now = now_ms(timers)
local due = redis.call('ZRANGE', timers, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
local fired = 0
for _, id in ipairs(due) do
  if redis.call('ZREM', timers, id) == 1 then
    local run = key_run(base, id)
    local st = redis.call('HMGET', run, 'status', 'workflow', 'version')
    if parked[st[1]] then
      requeue(run, id, key_stream(base, st[2], st[3]))
      redis.call('HSET', run, 'status', 'queued', 'updated_at', now)
      index_status(run, id, st[1], 'queued')
      redis.call('HDEL', run, 'wake_at')
      fired = fired + 1
    end
  end
end

local expired = redis.call('ZRANGE', task_deadlines, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
for _, member in ipairs(expired) do
  if redis.call('ZREM', task_deadlines, member) == 1 then
    local id, revision, address = string.match(member, '^([^|]*)|([^|]*)|(.*)$')
    if id then
      local run = key_run(base, id)
      local st = redis.call('HMGET', run, 'status', 'revision', 'workflow', 'version', 'message')
      local record = redis.call('HGET', key_tasks(base, id), address)
      if st[1] == 'running' and st[2] == revision and record
          and string.sub(record, 1, 19) == '{"status":"running"' then
        local stream = key_stream(base, st[3], st[4])
        if st[5] then drop_message(stream, group, st[5], id) end
        requeue(run, id, stream)
        redis.call('HINCRBY', run, 'revision', 1)
        redis.call('HSET', run, 'status', 'queued', 'updated_at', now)
        index_status(run, id, 'running', 'queued')
        redis.call('PUBLISH', control_channel, '{"action":"reclaim","run":"' .. id ..
          '","message":"' .. (st[5] or '') .. '"}')
        fired = fired + 1
      end
    end
  end
end

local next_due = redis.call('ZRANGE', timers, 0, 0, 'WITHSCORES')[2]
local next_deadline = redis.call('ZRANGE', task_deadlines, 0, 0, 'WITHSCORES')[2]
if next_deadline and (not next_due or tonumber(next_deadline) < tonumber(next_due)) then
  next_due = next_deadline
end
return {fired, math.max(#due, #expired), next_due or '', now}
