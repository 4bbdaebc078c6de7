-- Drops members of an owner's set whose session is gone or now belongs to
-- someone else, checking each here, atomically: `by_owner` found them stale
-- in an earlier read, and a session may have come back to this owner since
-- (its script then found the member already in the set); removing it
-- unchecked would hide a live session from `revoke_owner`.
-- KEYS[1] owner set key
-- ARGV[1] key prefix  ARGV[2] owner hash  ARGV[3..] the members found stale
-- Returns how many were removed.
local removed = 0
for i = 3, #ARGV do
  local current = get_value(ARGV[1] .. ARGV[i])
  local owner = nil
  if current then
    local _, o = parse_header(current)
    owner = o
  end
  if owner ~= ARGV[2] then
    removed = removed + redis.call('SREM', KEYS[1], ARGV[i])
  end
end
return removed
