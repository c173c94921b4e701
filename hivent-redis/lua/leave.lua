-- Removes a member from its group and releases all of its partitions at once.
--
-- KEYS[1] <service>:hivent:members   KEYS[2] <service>:hivent:owners
-- KEYS[3] <service>:hivent:tokens    KEYS[4] <service>:hivent:heartbeats
-- ARGV[1] member id   ARGV[2] the group channel
--
-- Reply: the number of partitions released. A member that was in the group tells the
-- others on the group channel, so they claim its partitions at once.

local was_member = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
local released = 0
local owners = redis.call('HGETALL', KEYS[2])
for i = 1, #owners, 2 do
  if owners[i + 1] == ARGV[1] then
    redis.call('HDEL', KEYS[2], owners[i])
    redis.call('HDEL', KEYS[3], owners[i])
    released = released + 1
  end
end
if was_member > 0 or released > 0 then
  redis.call('PUBLISH', ARGV[2], ARGV[1])
end
return released
