-- Removes the oldest items of a partition, if the caller still holds its claim.
--
-- KEYS[1] <service>:hivent:owners   KEYS[2] <service>:hivent:tokens
-- KEYS[3] <service>:<p>             KEYS[4] <service>:hivent:attempts
-- ARGV[1] member id   ARGV[2] partition   ARGV[3] fencing token   ARGV[4] count
--
-- Reply: 1 when removed; 0 when the claim is gone (fenced) and nothing changed.
--
-- Only the owner removes items and producers push on the left, so the `count`
-- rightmost items are exactly the ones the owner fetched and processed. The failed
-- attempts counted for the oldest item (attempt.lua) go with it.

if not holds_claim() then
  return 0
end
redis.call('LTRIM', KEYS[3], 0, -(tonumber(ARGV[4]) + 1))
redis.call('HDEL', KEYS[4], ARGV[2])
return 1
