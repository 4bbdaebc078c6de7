local current = redis.call('GET', KEYS[1])
if not current then return {0} end
local version, old_owner = parse_header(current)
if not version then return {4} end
if version ~= ARGV[6] then return {2, current} end
redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[3], 'XX')
if old_owner ~= ARGV[2] then
  index_remove(ARGV[1], old_owner, ARGV[4])
end
index_add(ARGV[1], ARGV[2], ARGV[4], ARGV[3])
if ARGV[9] then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return {1, tonumber(ARGV[7])}
