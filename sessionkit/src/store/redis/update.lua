-- Update: compare-and-set on the version. Writes only if the session still
-- exists (no resurrection after logout) and still has the version this
-- request loaded; otherwise hands the current value back for a merge.
-- KEYS[1] record key
-- ARGV[1] key prefix  ARGV[2] owner hash ('' = none)  ARGV[3] TTL ms
-- ARGV[4] index member
-- ARGV[5] the value to store: header (the version written, this owner hash) and payload,
--         built by the caller (a concatenation here copied the payload
--         inside Redis on every write)
-- ARGV[6] expected version (the version written, expected + 1, is in the
--         header, computed by the caller: string.format in the script cost
--         Redis about 2 us per write)
-- ARGV[7] ARGV[8] optional: a channel and a message to PUBLISH on it once
--         saved (the clustered store's invalidation: one round trip, and no
--         node hears of the write before it is done)
-- Returns {1} saved (the caller knows the version it wrote: a Lua number
-- would be a double, and Redis turns one past 2^63 into a wrong integer),
-- {0} gone, {2, current value} conflict, {4} bad header.
--
-- The one script run on every write, so it does not take index.lua's
-- prelude: defining its helper functions on each run (a closure each) and
-- building the value here cost Redis about 0.5 us of the ~3.7 us this script
-- took per write (redis-benchmark, bench/runs/lua-script-cost-2026-12-04).
-- What it inlines is index.lua's parse_header, index_remove and index_add
-- (with prune_index),
-- with the same rules; keep them in step.
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
local version, old_owner = string.match(current, '^sk1:(%d+):(%x*):')
if not version then return {4} end
if version ~= ARGV[6] then return {2, current} end
redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[3], 'XX')
if old_owner ~= ARGV[2] and old_owner ~= '' then
  redis.pcall('SREM', ARGV[1] .. 'owner:' .. old_owner, ARGV[4])
end
if ARGV[2] ~= '' then
  local key = ARGV[1] .. 'owner:' .. ARGV[2]
  local added = redis.pcall('SADD', key, ARGV[4])
  if type(added) == 'table' then
    -- index.lua's index_add: a key of another type is replaced.
    redis.call('DEL', key)
    added = redis.call('SADD', key, ARGV[4])
  end
  if added == 1 then
    -- index.lua's prune_index: a new member checks three others.
    for _, other in ipairs(redis.call('SRANDMEMBER', key, 3)) do
      if other ~= ARGV[4] and redis.call('EXISTS', ARGV[1] .. other) == 0 then
        redis.call('SREM', key, other)
      end
    end
  end
  if redis.call('PTTL', key) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', key, ARGV[3])
  end
end
if ARGV[8] then redis.call('PUBLISH', ARGV[7], ARGV[8]) end
return {1}
