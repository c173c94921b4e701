-- Reads where events go: for each event name its receiving services with their
-- partition counts, and the registry version these were read under. Producers cache
-- the answer (route_cache.rs) and emit by transaction while the version holds.
--
-- KEYS: none (like publish.lua, the services are only known once their sets are read).
-- ARGV[1] the registry version key (hivent:registry)   ARGV[2] partition count suffix
-- ARGV[3] the wildcard set (*)                          ARGV[4..] event names
--
-- Reply: {version, route1, route2, ...}: version is nil when no hivent registration
-- wrote one; route i is a flat {service, count, service, count, ...} for name i (empty
-- when nobody receives it), or the string "unroutable" when a set or a count key is
-- not what it should be: publish.lua then says exactly what, and writes nothing.
-- `partition_count` comes from partition_count.lua.

local count_suffix = ARGV[2]
local wildcard = ARGV[3]
local reply = { redis.call('GET', ARGV[1]) }
local counts = {}
for i = 4, #ARGV do
  local route = {}
  local found = redis.pcall('SUNION', ARGV[i], wildcard)
  if type(found) == 'table' and found['err'] ~= nil then
    route = 'unroutable'
  else
    for _, service in ipairs(found) do
      if counts[service] == nil then
        local text = redis.pcall('GET', service .. count_suffix)
        counts[service] = type(text) == 'string' and partition_count(text) or false
      end
      if not counts[service] then
        route = 'unroutable'
        break
      end
      route[#route + 1] = service
      route[#route + 1] = counts[service]
    end
  end
  reply[#reply + 1] = route
end
return reply
