-- Regenerate: move a session to a new id atomically. The new record exists
-- before the old one is deleted, and nothing is created if the old one is gone.
-- The old id then names the new one for a minute (`<prefix>moved:<old member>`).
-- KEYS[1] old record key  KEYS[2] new record key
-- ARGV[1] key prefix  ARGV[2] owner hash ('' = none)  ARGV[3] TTL ms
-- ARGV[4] new index member  ARGV[5] the value to store: header (the version written,
--         this owner hash) and payload, built by the caller
-- ARGV[6] expected version
-- ARGV[7] old index member
-- ARGV[8] ARGV[9] optional: a channel and a message to PUBLISH on it once
--         moved (as in update.lua)
-- Returns {1} saved (the version written is in the header, as in
-- update.lua), {0} gone, {2, current value} conflict, {3} new key taken,
-- {4} bad header.
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
local version, old_owner = parse_header(current)
if not version then return {4} end
if version ~= ARGV[6] then return {2, current} end
if not redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[3], 'NX') then
  return {3}
end
redis.call('DEL', KEYS[1])
-- Where the session went, for a logout that loaded the old id (see
-- delete_following.lua): kept a minute, or as long as the session if less.
redis.call('SET', moved_key(ARGV[1], ARGV[7]), ARGV[4], 'PX',
  math.min(MOVE_FORWARD_MS, tonumber(ARGV[3])))
index_remove(ARGV[1], old_owner, ARGV[7])
index_add(ARGV[1], ARGV[2], ARGV[4], ARGV[3])
if ARGV[9] then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return {1}
