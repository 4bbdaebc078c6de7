-- Delete one session for a logout, following recent regenerates: when the
-- key is gone and `<prefix>moved:<member>` names where the session went
-- (regenerate.lua writes it), delete it there (at most MOVE_FORWARD_HOPS
-- moves). Markers are left to expire, not deleted: a repeated call (a retry
-- after a lost reply) follows them again and answers the same member, which
-- the clustered store then announces again.
-- KEYS[1] record key
-- ARGV[1] key prefix  ARGV[2] index member of KEYS[1]
-- ARGV[3] ARGV[4] optional: a channel and a message to PUBLISH on it (the
--         clustered store's announcement of KEYS[1]), whatever was found
-- Returns {0} nothing deleted and no move followed, {1} deleted KEYS[1],
-- {2, member, value} deleted the session it moved to, whose index member
-- (key hash) is `member` and value `value` (for its owner), {3, member}
-- followed moves to `member` but found it gone.
local prefix = ARGV[1]
local member = ARGV[2]
local key = KEYS[1]
local reply = {0}
for hop = 0, MOVE_FORWARD_HOPS do
  local current = get_value(key)
  if current then
    local _, owner = parse_header(current)
    redis.call('DEL', key)
    index_remove(prefix, owner, member)
    if hop == 0 then reply = {1} else reply = {2, member, current} end
    break
  end
  if hop > 0 then reply = {3, member} end
  if hop == MOVE_FORWARD_HOPS then break end
  local moved_to = get_value(moved_key(prefix, member))
  -- Only what regenerate.lua writes: a key hash (64 hex digits).
  if not moved_to or not string.match(moved_to, '^' .. string.rep('[0-9a-f]', 64) .. '$') then
    break
  end
  member = moved_to
  key = prefix .. member
end
if ARGV[4] then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return reply
