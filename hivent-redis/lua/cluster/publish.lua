-- Cluster mode: stores one publish call's events for one partition of one receiving
-- service, once: every key is in the partition's hash slot.
--
-- KEYS[1] {<service>:<n>} the partition's list
-- KEYS[2] {<service>:<n>}:hivent:emitted:<call id> the call's marker in this slot
-- KEYS[3] {<service>:<n>}:hivent:partition_count the count a registration that
--         changed it stamped on the partition
-- ARGV[1] the marker's lifetime (ms)   ARGV[2] the service's wake channel
-- ARGV[3] the partition number         ARGV[4] the partition count the producer used
-- ARGV[5..] the events' JSON, in emit order
--
-- Reply: {"ok"} when stored; {"already"} when an earlier try of the call stored them
-- (nothing written); {"stale", count} when the partition is stamped with another
-- count than the producer's (its routes predate a registration: nothing written, it
-- reads them again); {"wrongtype", key, type} when the list key holds another type
-- (nothing written).

if redis.call('EXISTS', KEYS[2]) == 1 then
  return { 'already' }
end
local stamped = redis.call('GET', KEYS[3])
if stamped and stamped ~= ARGV[4] then
  return { 'stale', stamped }
end
local found = redis.call('TYPE', KEYS[1])['ok']
if found ~= 'list' and found ~= 'none' then
  return { 'wrongtype', KEYS[1], found }
end
-- LPUSH takes many values, but Lua's unpack is bounded: push in steps.
local step = 1000
for i = 5, #ARGV, step do
  redis.call('LPUSH', KEYS[1], unpack(ARGV, i, math.min(i + step - 1, #ARGV)))
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return { 'ok' }
