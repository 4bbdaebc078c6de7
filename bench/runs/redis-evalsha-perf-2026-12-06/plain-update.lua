local current = redis.call('GET', KEYS[1])
if not current then return {0} end
if string.sub(current, 1, #ARGV[3]) ~= ARGV[3] then return {2, current} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'XX')
if ARGV[5] then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return {1}
