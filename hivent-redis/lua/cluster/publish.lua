-- Cluster mode: stores one publish call's events for one partition of one receiving
-- service, once: every key is in the partition's hash slot.
--
-- KEYS[1] {<service>:<n>} the partition's list
-- KEYS[2] {<service>:<n>}:hivent:emitted:<call id> the call's marker in this slot
-- ARGV[1] the marker's lifetime (ms)   ARGV[2] the service's wake channel
-- ARGV[3] the partition number         ARGV[4..] the events' JSON, in emit order
--
-- Reply: {"ok"} when stored; {"already"} when an earlier try of the call stored them
-- (nothing written); {"wrongtype", key, type} when the list key holds another type
-- (nothing written).

if redis.call('EXISTS', KEYS[2]) == 1 then
  return { 'already' }
end
local found = redis.call('TYPE', KEYS[1])['ok']
if found ~= 'list' and found ~= 'none' then
  return { 'wrongtype', KEYS[1], found }
end
-- LPUSH takes many values, but Lua's unpack is bounded: push in steps.
local step = 1000
for i = 4, #ARGV, step do
  redis.call('LPUSH', KEYS[1], unpack(ARGV, i, math.min(i + step - 1, #ARGV)))
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return { 'ok' }
