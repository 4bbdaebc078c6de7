-- Delete sessions and their owner index entries (one, or a batch for bulk_delete).
-- KEYS[i] record key
-- ARGV[1] key prefix  ARGV[i + 1] index member of KEYS[i]
-- Returns, per key, 1 if the session existed, 0 otherwise.
local existed = {}
for i, key in ipairs(KEYS) do
  local current = get_value(key)
  if current then
    local _, owner = parse_header(current)
    redis.call('DEL', key)
    index_remove(ARGV[1], owner, ARGV[i + 1])
    existed[i] = 1
  else
    existed[i] = 0
  end
end
return existed
