--- set_attributes: an execution sets search attributes on its run, fenced by its
--- revision: each is kept in the run's `attributes` field (a JSON object of strings)
--- and indexed (kind `attr:<name>`), leaving the index of a value it replaces.
-- KEYS: run
-- ARGV: revision, id, max_attributes, ...changes
-- `changes` are pairs name, value; an empty value removes the attribute. Setting a
-- value the run has already is a no-op (a replay repeats its calls). Returns how many
-- attributes changed; refuses (LIMIT) a run that would have more than `max_attributes`.
--- @include "lib"
local run = KEYS[1]
local revision, id, max_attributes = ARGV[1], ARGV[2], tonumber(ARGV[3])

local st, refused = fence(run, revision, 'attributes', 'created_at')
if refused then return refused end
local attrs = {}
if st[3] then attrs = cjson.decode(st[3]) end
local base = base_of(run)
local changes = {}
for i = 4, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if value == '' then value = nil end
  if attrs[name] ~= value then changes[#changes + 1] = {name, attrs[name], value} end
  attrs[name] = value
end
if #changes == 0 then return 0 end
local count = 0
for _ in pairs(attrs) do count = count + 1 end
if count > max_attributes then
  return redis.error_reply('LIMIT run would have ' .. count .. ' attributes (at most ' ..
    max_attributes .. ')')
end
for _, change in ipairs(changes) do
  local name, old, new = change[1], change[2], change[3]
  if old then index_remove(base, id, 'attr:' .. name, old) end
  if new then index_add(base, id, st[4], 'attr:' .. name, new) end
end
if count == 0 then
  redis.call('HDEL', run, 'attributes')
else
  redis.call('HSET', run, 'attributes', cjson.encode(attrs))
end
return #changes
