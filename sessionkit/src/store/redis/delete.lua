-- Delete one session and its owner index entry.
-- KEYS[1] record key
-- ARGV[1] key prefix  ARGV[2] index member
-- Returns 1 if the session existed, 0 otherwise.
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local _, owner = parse_header(current)
redis.call('DEL', KEYS[1])
index_remove(ARGV[1], owner, ARGV[2])
return 1
