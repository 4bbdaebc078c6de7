-- Shared prelude of the sessionkit scripts (prepended in Rust), except
-- update.lua, which inlines what it needs (see there).
--
-- A stored value is `sk1:<version>:<owner hash hex or empty>:<payload>`. The
-- header lets these scripts compare versions and keep the owner index in step
-- without decoding the payload (which may be compressed or sealed).
--
-- Owner index keys are built here from the key prefix (ARGV[1]): fine on a
-- single Redis or a replica set; on Redis Cluster the prefix is a hash tag
-- (`{sessionkit:}`), so these keys share the slot of the declared ones.

local function parse_header(value)
  return string.match(value, '^sk1:(%d+):(%x*):')
end

local function owner_key(prefix, owner)
  return prefix .. 'owner:' .. owner
end

-- Adds a session to its owner's set and makes the set live at least as long
-- as this session (the set expires with the longest-lived of its sessions).
local function index_add(prefix, owner, member, ttl_ms)
  if owner == '' then return end
  local key = owner_key(prefix, owner)
  redis.call('SADD', key, member)
  if redis.call('PTTL', key) < tonumber(ttl_ms) then
    redis.call('PEXPIRE', key, ttl_ms)
  end
end

local function index_remove(prefix, owner, member)
  if owner == nil or owner == '' then return end
  redis.call('SREM', owner_key(prefix, owner), member)
end
