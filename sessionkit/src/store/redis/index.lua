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

-- A session key's value, or false when the key is missing or holds no
-- string (a hash or set some other tool wrote under the prefix: not a
-- session). `redis.call` would raise WRONGTYPE and end the script half done
-- (a revoke stopping at that member, every retry again).
local function get_value(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' then return false end
  return value
end

local function owner_key(prefix, owner)
  return prefix .. 'owner:' .. owner
end

-- Where a regenerate moved the session of index member `member`: a key
-- holding the new member, for MOVE_FORWARD_MS (store::MOVE_FORWARD_TTL).
local MOVE_FORWARD_MS = 60000
-- How many moves a logout follows at most (store::MOVE_FORWARD_HOPS).
local MOVE_FORWARD_HOPS = 4
local function moved_key(prefix, member)
  return prefix .. 'moved:' .. member
end

-- A session that expires stays in its owner's set: Redis drops the key and
-- cannot tell the set. So whenever a set gains a member (a login, a new
-- session of a known owner), up to three random members are checked (the
-- new one may be among them, and is skipped) and dropped if their session
-- is gone. The dead share of a set then stays
-- around a third or less, however long its owner keeps logging in without
-- logging out, at a cost of three EXISTS per new member (no cost on the
-- updates of a session already indexed). Call it after the new member's
-- session is written. SRANDMEMBER in a script that writes needs effects
-- replication: the default since Redis 5, the only mode since Redis 7.
local function prune_index(prefix, key, member)
  for _, other in ipairs(redis.call('SRANDMEMBER', key, 3)) do
    if other ~= member and redis.call('EXISTS', prefix .. other) == 0 then
      redis.call('SREM', key, other)
    end
  end
end

-- Adds a session to its owner's set and makes the set live at least as long
-- as this session (the set expires with the longest-lived of its sessions).
local function index_add(prefix, owner, member, ttl_ms)
  if owner == '' then return end
  local key = owner_key(prefix, owner)
  local added = redis.pcall('SADD', key, member)
  if type(added) == 'table' then
    -- Not a set (something else wrote under the prefix): replaced, so the
    -- owner's sessions stay listable and revocable, and a save that wrote
    -- its session does not end in WRONGTYPE.
    redis.call('DEL', key)
    added = redis.call('SADD', key, member)
  end
  if added == 1 then
    prune_index(prefix, key, member)
  end
  if redis.call('PTTL', key) < tonumber(ttl_ms) then
    redis.call('PEXPIRE', key, ttl_ms)
  end
end

local function index_remove(prefix, owner, member)
  if owner == nil or owner == '' then return end
  -- pcall: a key of another type (see index_add) holds no member of ours.
  redis.pcall('SREM', owner_key(prefix, owner), member)
end
