--- find_runs: one shard's part of a run search, newest first: the runs in EVERY given
--- index (sorted sets of run ids by creation time), created in [lower, upper), after
--- the cursor, with their hashes.
-- KEYS: ...indexes
-- ARGV: base, lower, upper, after_ms, after_id, limit, budget
-- `lower`/`upper` are ms, '' for no bound; `after_ms`/`after_id` the last run of the
-- previous page ('' for the first page). The smallest index drives: its entries are
-- walked newest first and each is looked up in the others, so the cost follows the most
-- selective filter, not the number of runs; at most `budget` entries are looked at per
-- call (a script blocks Redis while it runs). Order is (creation ms, id) descending, as
-- Redis orders a sorted set's equal scores by member. Returns {state, last ms, last id,
-- {id, {field, value, ...}}, ...}: state 'done' (nothing more here), 'full' (`limit`
-- runs found, the last one is last) or 'more' (budget spent: go on after last ms/id).
--- @include "lib"
local base, lower, upper, after_ms, after_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local limit, budget = tonumber(ARGV[6]), tonumber(ARGV[7])

-- memcmp order: how Redis orders members of equal score (Lua's `<` follows the locale).
local function lex_less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local drive, smallest = 1, nil
for i = 1, #KEYS do
  local n = redis.call('ZCARD', KEYS[i])
  if n == 0 then return {'done', '', ''} end
  if not smallest or n < smallest then drive, smallest = i, n end
end
local key, others = KEYS[drive], {}
for i = 1, #KEYS do
  if i ~= drive then others[#others + 1] = KEYS[i] end
end

-- The first rank to look at: past the entries at or above `upper` and, after a cursor,
-- past the newer ones; entries of the cursor's own ms are skipped one by one below
-- (at once when the cursor's run is in this index: just past it).
local pos = 0
if upper ~= '' then pos = redis.call('ZCOUNT', key, upper, '+inf') end
local cursor_ms = nil
if after_ms ~= '' then
  cursor_ms = tonumber(after_ms)
  pos = math.max(pos, redis.call('ZCOUNT', key, '(' .. after_ms, '+inf'))
  local score = redis.call('ZSCORE', key, after_id)
  if score and tonumber(score) == cursor_ms then
    pos = math.max(pos, redis.call('ZREVRANK', key, after_id) + 1)
  end
end
local lower_ms = nil
if lower ~= '' then lower_ms = tonumber(lower) end

local out = {'done', '', ''}
local looked = 0
local chunk = math.min(200, budget)
while true do
  local entries = redis.call('ZREVRANGE', key, pos, pos + chunk - 1, 'WITHSCORES')
  if #entries == 0 then return out end
  for i = 1, #entries, 2 do
    local id, score = entries[i], entries[i + 1]
    local ms = tonumber(score)
    if lower_ms and ms < lower_ms then return out end
    if not (cursor_ms and ms == cursor_ms and not lex_less(id, after_id)) then
      looked = looked + 1
      local match = true
      for _, other in ipairs(others) do
        if not redis.call('ZSCORE', other, id) then
          match = false
          break
        end
      end
      if match then
        local fields = redis.call('HGETALL', key_run(base, id))
        -- a run whose keys expired (retention) stays indexed until pruned: skip it
        if #fields > 0 then out[#out + 1] = {id, fields} end
      end
      out[2], out[3] = score, id
      if #out - 3 >= limit then
        out[1] = 'full'
        return out
      end
      if looked >= budget then
        out[1] = 'more'
        return out
      end
    end
  end
  pos = pos + chunk
end
