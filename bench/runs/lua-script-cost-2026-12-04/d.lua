local current = redis.call('GET', KEYS[1])
return {1, 6}
