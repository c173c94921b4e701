-- Cluster mode: where events go, read from the registry slot ({hivent}).
--
-- KEYS[1] {hivent}:receivers:*   KEYS[2..] {hivent}:receivers:<event>, one per name
-- ARGV[1] the partition count key prefix ({hivent}:partition_count:)
--
-- Reply: {route1, route2, ...}: route i is a flat {service, count, ...} for
-- name i, or {"missing", service, found} when a receiving service has no valid count
-- (found is false when the key is absent).
-- The count keys are named here from the services found; they share the slot. No
-- version is read: producers drop cached routes on change notices and on a stamp
-- that refuses their count.

local reply = {}
local counts = {}
for i = 2, #KEYS do
  local route = {}
  for _, service in ipairs(redis.call('SUNION', KEYS[i], KEYS[1])) do
    if counts[service] == nil then
      counts[service] = partition_count(redis.call('GET', ARGV[1] .. service)) or false
    end
    if not counts[service] then
      -- `or false`: a nil would end the table; three elements tell it from pairs.
      route = { 'missing', service, redis.call('GET', ARGV[1] .. service) or false }
      break
    end
    route[#route + 1] = service
    route[#route + 1] = counts[service]
  end
  reply[#reply + 1] = route
end
return reply
