-- Records that a service receives exactly the given events with its partition count.
--
-- KEYS[1] <service>:partition_count   KEYS[2] <service>:hivent:events
-- ARGV[1] service   ARGV[2] partition count   ARGV[3] partition prefix (<service>:)
-- ARGV[4..] event names, each also the key of its set of receivers (* included)
--
-- Reply: {"ok"}
--        {"conflict", stored, p1, p2, ...}   a different count is stored and the
--                                             listed old partitions still hold events;
--                                             nothing was changed

local service = ARGV[1]
local requested = tonumber(ARGV[2])
local prefix = ARGV[3]

local stored = partition_count(redis.call('GET', KEYS[1]))

if stored and stored ~= requested then
  -- Events in the old partitions were placed by the old count; reading them under a
  -- new one would break per-key order, so the change waits until they are drained.
  local reply = { 'conflict', stored }
  for p = 0, stored - 1 do
    if redis.call('LLEN', prefix .. string.format('%d', p)) > 0 then
      reply[#reply + 1] = p
    end
  end
  if #reply > 2 then
    return reply
  end
end

redis.call('SET', KEYS[1], ARGV[2])

local wanted = {}
for i = 4, #ARGV do
  wanted[ARGV[i]] = true
end
for _, old in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not wanted[old] then
    redis.call('SREM', old, service)
  end
end
redis.call('DEL', KEYS[2])
for i = 4, #ARGV do
  redis.call('SADD', ARGV[i], service)
  redis.call('SADD', KEYS[2], ARGV[i])
end
return { 'ok' }
