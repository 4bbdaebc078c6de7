-- Delete every session of one owner: O(that owner's sessions), no scan.
-- Members whose session is gone or now belongs to someone else are skipped
-- (stale entries); the set itself is removed.
-- KEYS[1] owner set key
-- ARGV[1] key prefix  ARGV[2] owner hash
-- Returns, per deleted session, its index member (the key's hash, which a
-- clustered store announces even when it cannot decode the value) followed
-- by the deleted value (decoded by the caller to report the id).
local deleted = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. member
  local current = get_value(key)
  if current then
    local _, owner = parse_header(current)
    if owner == ARGV[2] then
      redis.call('DEL', key)
      deleted[#deleted + 1] = member
      deleted[#deleted + 1] = current
    end
  end
end
redis.call('DEL', KEYS[1])
return deleted
