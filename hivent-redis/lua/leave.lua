-- Removes a member from its group and releases all of its partitions at once.
--
-- KEYS[1] <service>:hivent:members   KEYS[2] <service>:hivent:owners
-- KEYS[3] <service>:hivent:tokens
-- ARGV[1] member id
--
-- Reply: the number of partitions released.

redis.call('ZREM', KEYS[1], ARGV[1])
local released = 0
local owners = redis.call('HGETALL', KEYS[2])
for i = 1, #owners, 2 do
  if owners[i + 1] == ARGV[1] then
    redis.call('HDEL', KEYS[2], owners[i])
    redis.call('HDEL', KEYS[3], owners[i])
    released = released + 1
  end
end
return released
