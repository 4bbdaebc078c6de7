-- Delete every session of one owner: O(that owner's sessions), no scan.
-- Members whose session is gone or now belongs to someone else are skipped
-- (stale entries); the set itself is removed.
-- KEYS[1] owner set key
-- ARGV[1] key prefix  ARGV[2] owner hash
-- Returns the index member of every deleted session: the key's hash, which
-- is the session's handle (the caller reports and a clustered store
-- announces it, whether or not it could decode the value).
local deleted = {}
-- A key of another type (see index.lua's index_add) lists no session.
local members = redis.pcall('SMEMBERS', KEYS[1])
if members.err then members = {} end
for _, member in ipairs(members) do
  local key = ARGV[1] .. member
  local current = get_value(key)
  if current then
    local _, owner = parse_header(current)
    if owner == ARGV[2] then
      redis.call('DEL', key)
      deleted[#deleted + 1] = member
    end
  end
end
redis.call('DEL', KEYS[1])
return deleted
