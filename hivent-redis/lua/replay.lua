-- Moves dead letters back to the oldest end of their partition, in their original
-- order, deletes their failure records and voids the partition's claim.
--
-- KEYS[1] <service>:<p>   KEYS[2] <service>:<p>:dead_letter
-- KEYS[3] <service>:hivent:owners   KEYS[4] <service>:hivent:tokens
-- KEYS[5] <service>:hivent:failures:<p>
-- ARGV[1] partition   ARGV[2] the service's wake channel
-- ARGV[3] 'oldest' then ARGV[4] the most items to move, or 'items' then ARGV[4..] the
-- items to move, oldest first (see pick_dead_letters.lua)
--
-- Reply: how many items moved.
--
-- The items go to the right end, where the owner reads next, which breaks the rule
-- that only the owner touches that end; voiding the claim is what keeps it sound: the
-- owner's batch in hand can no longer be acknowledged (its trim would now remove
-- replayed items unseen), and it reclaims the partition with a new token at its next
-- heartbeat and reads the replayed items first. One call moves all of them, so
-- replayed events of one key keep their order.

local taken = pick(KEYS[2], KEYS[5], ARGV[3], 4)
if #taken == 0 then
  return 0
end
-- The oldest must end up rightmost: push newest first.
local newest_first = {}
for i = #taken, 1, -1 do
  newest_first[#newest_first + 1] = taken[i]
end
push_all('RPUSH', KEYS[1], newest_first)
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return #taken
