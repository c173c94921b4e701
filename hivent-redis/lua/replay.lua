-- Moves the oldest dead letters of a partition back to its oldest end, in their
-- original order, and voids the partition's claim.
--
-- KEYS[1] <service>:<p>   KEYS[2] <service>:<p>:dead_letter
-- KEYS[3] <service>:hivent:owners   KEYS[4] <service>:hivent:tokens
-- ARGV[1] partition   ARGV[2] most items to move   ARGV[3] the service's wake channel
--
-- Reply: how many items moved.
--
-- The items go to the right end, where the owner reads next, which breaks the rule
-- that only the owner touches that end; voiding the claim is what keeps it sound: the
-- owner's batch in hand can no longer be acknowledged (its trim would now remove
-- replayed items unseen), and it reclaims the partition with a new token at its next
-- heartbeat and reads the replayed items first.

local n = math.min(tonumber(ARGV[2]), redis.call('LLEN', KEYS[2]))
if n <= 0 then
  return 0
end
-- The oldest dead letter is at the right end of its queue and must end up rightmost.
local items = redis.call('LRANGE', KEYS[2], -n, -1)
for i = 1, #items, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(items, i, math.min(i + 999, #items)))
end
redis.call('LTRIM', KEYS[2], 0, -(n + 1))
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return n
