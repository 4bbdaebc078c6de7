local current = redis.call('GET', KEYS[1])
if not current then return {0} end
local version, old_owner = string.match(current, '^sk1:(%d+):(%x*):')
if not version then return {4} end
if version ~= ARGV[6] then return {2, current} end
redis.call('SET', KEYS[1], 'sk1:' .. ARGV[7] .. ':' .. ARGV[2] .. ':' .. ARGV[5], 'PX', ARGV[3], 'XX')
if ARGV[9] then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return {1, tonumber(ARGV[7])}
