--- take_run: take a run for execution (see `take` in the library).
-- KEYS: run, tasks, events
-- ARGV: worker, message
--- @include "lib"
return take(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], now_ms(KEYS[1]))
