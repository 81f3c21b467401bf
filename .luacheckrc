-- luacheck configuration for the store's Lua scripts (src/aiki/_store/lua/).
-- Redis runs scripts on Lua 5.1 with these globals; every script but the library gets
-- the library's functions, which the loader includes in place of `--- @include "lib"`.
std = "lua51"
max_line_length = 120
read_globals = {"redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct"}

local library = {
  "now_ms", "is_terminal", "fence", "key_base", "shard_of", "base_of", "key_run",
  "key_tasks", "key_events", "key_children", "key_stream", "key_reference", "key_runs",
  "key_ended", "key_timers", "key_config", "key_clock_offset", "key_index", "key_indexed",
  "index_status", "index_add", "index_remove", "retain", "wake_parent", "create_run", "take",
  "key_concurrency", "key_concurrency_waiting", "concurrency_holders", "concurrency_admit",
  "concurrency_wait", "concurrency_release",
  -- priorities
  "key_queue", "key_held", "sibling", "is_held", "enqueue", "requeue", "drop_message",
  "take_next",
}

files["src/aiki/_store/lua/*.lua"] = {read_globals = library}
-- The library defines what the scripts use; not every script uses everything.
files["src/aiki/_store/lua/lib.lua"] = {read_globals = {}, ignore = {"211"}}
-- A script's `-- ARGV:` header is one line (tests/test_lua.py reads it); some are long.
for _, long in ipairs({"start_run", "fire_schedule", "trigger_schedule"}) do
  files["src/aiki/_store/lua/" .. long .. ".lua"] = {read_globals = library,
    max_comment_line_length = 200}
end
