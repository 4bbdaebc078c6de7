-- e: as a.lua's update but helpers inlined (no closures created per call), envelope from the client
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
local version, old_owner = string.match(current, '^sk1:(%d+):(%x*):')
if not version then return {4} end
if version ~= ARGV[6] then return {2, current} end
redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[3], 'XX')
if old_owner ~= ARGV[2] and old_owner ~= '' then
  redis.call('SREM', ARGV[1] .. 'owner:' .. old_owner, ARGV[4])
end
if ARGV[2] ~= '' then
  local key = ARGV[1] .. 'owner:' .. ARGV[2]
  redis.call('SADD', key, ARGV[4])
  if redis.call('PTTL', key) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', key, ARGV[3])
  end
end
if ARGV[9] then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return {1, tonumber(ARGV[7])}
