-- Removes the oldest items of one or more partitions, each only if the caller still
-- holds its claim: one call acknowledges every batch a fetch handled.
--
-- KEYS[1] <service>:hivent:owners   KEYS[2] <service>:hivent:tokens
-- KEYS[3] <service>:hivent:attempts KEYS[4..] the partitions' lists, in the order below
-- ARGV[1] member id   ARGV[2..] triples: partition, fencing token, count
--
-- Reply: one element per partition: 1 when removed; 0 when its claim is gone (fenced)
-- and nothing of it changed.
--
-- Only the owner removes items and producers push on the left, so the `count`
-- rightmost items are exactly the ones the owner fetched and processed. The failed
-- attempts counted for the oldest item (attempt.lua) go with it.

local member = ARGV[1]
local fields = {}
for i = 2, #ARGV, 3 do
  fields[#fields + 1] = ARGV[i]
end
local owners = redis.call('HMGET', KEYS[1], unpack(fields))
local tokens = redis.call('HMGET', KEYS[2], unpack(fields))
local reply = {}
for n, field in ipairs(fields) do
  local at = 2 + (n - 1) * 3
  if owners[n] == member and tokens[n] == ARGV[at + 1] then
    redis.call('LTRIM', KEYS[n + 3], 0, -(tonumber(ARGV[at + 2]) + 1))
    redis.call('HDEL', KEYS[3], field)
    reply[n] = 1
  else
    reply[n] = 0
  end
end
return reply
