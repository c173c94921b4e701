-- Stores one copy of each event in a partition of every service that receives it.
--
-- KEYS: none (the receiving services are only known once their sets are read; like
--       the Ruby gem's script, this does not run on Redis Cluster).
-- ARGV[1] this call's marker key (hivent:emitted:<call id>)
-- ARGV[2] marker lifetime in ms
-- ARGV[3] partition count suffix (:partition_count)
-- ARGV[4] partition separator (:)              ARGV[5] wake channel suffix
-- ARGV[6] the wildcard set (*)
-- ARGV[7..] triples: event name, partition hash (decimal u32), event JSON
--
-- Reply: {"ok", n1, n2, ...}        stored now; ni services received event i
--        {"already", n1, n2, ...}   an earlier try of this call stored it; nothing now
--        {"missing", service, event, found}   nothing was written; found is nil
--                                  when the count key is absent
--        {"wrongtype", key, type}  a key the call reads or pushes to is of another
--                                  type (a colliding name): nothing was written
--
-- Every check (key types, partition counts) comes before the first write, so a failed
-- check leaves nothing behind. The call is atomic, so one marker per call makes a
-- retry after a lost reply harmless: the client sends the same call id again, and a
-- call whose marker exists writes nothing. Receivers and counts are read once per
-- event name and service, not once per event. `partition_count` comes from
-- partition_count.lua.

local marker = ARGV[1]
local marker_ttl = ARGV[2]
local count_suffix = ARGV[3]
local separator = ARGV[4]
local wake_suffix = ARGV[5]
local wildcard = ARGV[6]

local function type_of(key)
  return redis.call('TYPE', key)['ok']
end

local wildcard_type = type_of(wildcard)
if wildcard_type ~= 'set' and wildcard_type ~= 'none' then
  return { 'wrongtype', wildcard, wildcard_type }
end

-- Receivers of each event name; their counts are checked only when the call writes.
local receivers = {}
for i = 7, #ARGV, 3 do
  local name = ARGV[i]
  if receivers[name] == nil then
    local found = type_of(name)
    if found ~= 'set' and found ~= 'none' then
      return { 'wrongtype', name, found }
    end
    receivers[name] = redis.call('SUNION', name, wildcard)
  end
end

local function counts_reply(tag)
  local reply = { tag }
  for i = 7, #ARGV, 3 do
    reply[#reply + 1] = #receivers[ARGV[i]]
  end
  return reply
end

if redis.call('EXISTS', marker) == 1 then
  return counts_reply('already')
end

local counts = {}
for i = 7, #ARGV, 3 do
  for _, service in ipairs(receivers[ARGV[i]]) do
    if counts[service] == nil then
      local key = service .. count_suffix
      local found = type_of(key)
      if found ~= 'string' and found ~= 'none' then
        return { 'wrongtype', key, found }
      end
      local text = redis.call('GET', key)
      local count = partition_count(text)
      if not count then
        return { 'missing', service, ARGV[i], text }
      end
      counts[service] = count
    end
  end
end

-- The target lists, computed once, each checked to be a list (or absent).
local targets = {}
local checked = {}
for i = 7, #ARGV, 3 do
  local hash = tonumber(ARGV[i + 1])
  local keys = {}
  for _, service in ipairs(receivers[ARGV[i]]) do
    local partition = hash % counts[service]
    local key = service .. separator .. string.format('%d', partition)
    if not checked[key] then
      local found = type_of(key)
      if found ~= 'list' and found ~= 'none' then
        return { 'wrongtype', key, found }
      end
      checked[key] = true
    end
    keys[#keys + 1] = { service, partition, key }
  end
  targets[i] = keys
end

local woken = {}
for i = 7, #ARGV, 3 do
  local json = ARGV[i + 2]
  for _, target in ipairs(targets[i]) do
    redis.call('LPUSH', target[3], json)
    woken[target[1]] = target[2]
  end
end
redis.call('SET', marker, '1', 'PX', marker_ttl)
for service, partition in pairs(woken) do
  redis.call('PUBLISH', service .. wake_suffix, string.format('%d', partition))
end
return counts_reply('ok')
