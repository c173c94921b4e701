-- Records that a service receives exactly the given events with its partition count.
--
-- KEYS[1] <service>:partition_count   KEYS[2] <service>:hivent:events
-- KEYS[3] hivent:registry (the registry version, moved on whenever this changes who
--         receives what or a partition count, so producers' cached routes give way)
-- ARGV[1] service   ARGV[2] partition count   ARGV[3] partition prefix (<service>:)
-- ARGV[4..] event names, each also the key of its set of receivers (* included)
--
-- Reply: {"ok"}
--        {"conflict", stored, p1, p2, ...}   a different count is stored and the
--                                             listed old partitions still hold events;
--                                             nothing was changed
--        {"wrongtype", key, type}            a key the registration writes holds
--                                             another type (a colliding name); nothing
--                                             was changed
--        {"reserved", event, service}        the event name is a partition of another
--                                             registered service; nothing was changed
--        {"invalid", count}                  the count is not from 1 to 1024
--
-- Every check comes before the first write, so a refused registration leaves the old
-- one in place.

local service = ARGV[1]
local requested = partition_count(ARGV[2])
local prefix = ARGV[3]
if not requested then
  return { 'invalid', ARGV[2] }
end

local function type_of(key)
  return redis.call('TYPE', key)['ok']
end

local function expect(key, wanted)
  local found = type_of(key)
  if found ~= wanted and found ~= 'none' then
    return { 'wrongtype', key, found }
  end
  return nil
end

local refused = expect(KEYS[1], 'string') or expect(KEYS[2], 'set')
if refused then
  return refused
end
for p = 0, requested - 1 do
  local list = prefix .. string.format('%d', p)
  refused = expect(list, 'list') or expect(list .. ':dead_letter', 'list')
  if refused then
    return refused
  end
end
local wanted = {}
for i = 4, #ARGV do
  local name = ARGV[i]
  wanted[name] = true
  refused = expect(name, 'set')
  if refused then
    return refused
  end
  local owner = string.match(name, '^(.+):%d+$')
  if owner and owner ~= service and redis.call('EXISTS', owner .. ':partition_count') == 1 then
    return { 'reserved', name, owner }
  end
end
local old_events = redis.call('SMEMBERS', KEYS[2])
for _, old in ipairs(old_events) do
  if not wanted[old] then
    refused = expect(old, 'set')
    if refused then
      return refused
    end
  end
end

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

local changed = stored ~= requested
redis.call('SET', KEYS[1], ARGV[2])

for _, old in ipairs(old_events) do
  if not wanted[old] then
    changed = redis.call('SREM', old, service) == 1 or changed
  end
end
redis.call('DEL', KEYS[2])
for i = 4, #ARGV do
  changed = redis.call('SADD', ARGV[i], service) == 1 or changed
  redis.call('SADD', KEYS[2], ARGV[i])
end
if changed then
  move_registry_version(KEYS[3])
end
return { 'ok' }
