-- Create: write a new session only if its key is free (NX), so an id
-- collision can never replace another session.
-- KEYS[1] record key
-- ARGV[1] key prefix  ARGV[2] owner hash ('' = none)  ARGV[3] TTL ms
-- ARGV[4] index member (the id's hash)
-- ARGV[5] the value to store: header (version 1, this owner hash) and payload,
--         built by the caller
-- Returns {1, 1} saved (version 1), {3} key taken.
if not redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[3], 'NX') then
  return {3}
end
index_add(ARGV[1], ARGV[2], ARGV[4], ARGV[3])
return {1, 1}
