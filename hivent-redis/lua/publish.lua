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
-- Reply: {"ok", stored, already}   stored: events pushed now; already: events of a call
--                                  whose marker showed an earlier try stored them
--        {"missing", service, event, found}   nothing was written; found is nil
--                                  when the count key is absent
--
-- Every count is checked before the first write, so a service without a partition
-- count makes the whole call a no-op. The call is atomic, so one marker per call makes
-- a retry after a lost reply harmless: the client sends the same call id again, and a
-- call whose marker exists writes nothing. Receivers and counts are read once per
-- event name and service, not once per event. `partition_count` comes from
-- partition_count.lua.

local marker = ARGV[1]
local marker_ttl = ARGV[2]
local count_suffix = ARGV[3]
local separator = ARGV[4]
local wake_suffix = ARGV[5]
local wildcard = ARGV[6]
local events = (#ARGV - 6) / 3

if redis.call('EXISTS', marker) == 1 then
  return { 'ok', 0, events }
end

local counts = {}
local receivers = {}
for i = 7, #ARGV, 3 do
  local name = ARGV[i]
  if receivers[name] == nil then
    local services = redis.call('SUNION', name, wildcard)
    for _, service in ipairs(services) do
      if counts[service] == nil then
        local text = redis.call('GET', service .. count_suffix)
        local count = partition_count(text)
        if not count then
          return { 'missing', service, name, text }
        end
        counts[service] = count
      end
    end
    receivers[name] = services
  end
end

local woken = {}
for i = 7, #ARGV, 3 do
  local hash, json = tonumber(ARGV[i + 1]), ARGV[i + 2]
  for _, service in ipairs(receivers[ARGV[i]]) do
    local partition = hash % counts[service]
    redis.call('LPUSH', service .. separator .. string.format('%d', partition), json)
    woken[service] = partition
  end
end
redis.call('SET', marker, '1', 'PX', marker_ttl)
for service, partition in pairs(woken) do
  redis.call('PUBLISH', service .. wake_suffix, string.format('%d', partition))
end
return { 'ok', events, 0 }
