local current = redis.call('GET', KEYS[1])
if not current then return {0} end
redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[3], 'XX')
return {1, 6}
