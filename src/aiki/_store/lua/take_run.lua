--- take_run: take the run a message read from a stream stands for: the run it names, or
--- one with a higher priority (see `take_next` and `take` in the library).
-- KEYS: stream
-- ARGV: worker, message, id
-- `id` is the run the message names ('' for a doorbell). Returns {stream, message, run id,
-- take reply}: the message (and the run) the execution holds.
--- @include "lib"
local stream = KEYS[1]
return take_next(base_of(stream), stream, ARGV[2], ARGV[3], ARGV[1], now_ms(stream))
