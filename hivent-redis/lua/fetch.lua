-- Reads the oldest items of the partitions a member believes it owns, each only if
-- its claim still holds, in one atomic step: a batch is never read under a claim that
-- was already voided (by a take-over or a dead-letter replay).
--
-- KEYS[1] <service>:hivent:owners   KEYS[2] <service>:hivent:tokens
-- KEYS[3..] the partitions' lists, in the order of the pairs below
-- ARGV[1] member id   ARGV[2] most items per partition
-- ARGV[3..] pairs: partition, fencing token
--
-- Reply: one element per partition: the list of its oldest items, newest first (as
-- LRANGE gives them; empty when the partition is empty), or 0 when the claim is gone.

local member = ARGV[1]
local max = tonumber(ARGV[2])
local reply = {}
for i = 3, #ARGV, 2 do
  local field, token = ARGV[i], ARGV[i + 1]
  local key = KEYS[(i - 3) / 2 + 3]
  if redis.call('HGET', KEYS[1], field) == member and redis.call('HGET', KEYS[2], field) == token then
    reply[#reply + 1] = redis.call('LRANGE', key, -max, -1)
  else
    reply[#reply + 1] = 0
  end
end
return reply
