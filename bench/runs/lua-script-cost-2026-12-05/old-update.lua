-- Update: compare-and-set on the version. Writes only if the session still
-- exists (no resurrection after logout) and still has the version this
-- request loaded; otherwise hands the current value back for a merge.
-- KEYS[1] record key
-- ARGV[1] key prefix  ARGV[2] owner hash ('' = none)  ARGV[3] TTL ms
-- ARGV[4] index member  ARGV[5] payload  ARGV[6] expected version
-- ARGV[7] the version to write (expected + 1, computed by the caller:
--         string.format in the script cost Redis about 2 us per write)
-- ARGV[8] ARGV[9] optional: a channel and a message to PUBLISH on it once
--         saved (the clustered store's invalidation: one round trip, and no
--         node hears of the write before it is done)
-- Returns {1, version} saved, {0} gone, {2, current value} conflict, {4} bad header.
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
local version, old_owner = parse_header(current)
if not version then return {4} end
if version ~= ARGV[6] then return {2, current} end
local next_version = ARGV[7]
redis.call('SET', KEYS[1], envelope(next_version, ARGV[2], ARGV[5]), 'PX', ARGV[3], 'XX')
if old_owner ~= ARGV[2] then
  index_remove(ARGV[1], old_owner, ARGV[4])
end
index_add(ARGV[1], ARGV[2], ARGV[4], ARGV[3])
if ARGV[9] then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return {1, tonumber(next_version)}
