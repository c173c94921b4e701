-- Counts a failed attempt at the oldest item of a partition, if the caller still holds
-- the partition's claim and the item is the one it read, in one step.
--
-- KEYS[1] <service>:hivent:owners   KEYS[2] <service>:hivent:tokens
-- KEYS[3] <service>:<p>             KEYS[4] <service>:hivent:attempts
-- ARGV[1] member id   ARGV[2] partition   ARGV[3] fencing token   ARGV[4] the raw item
-- ARGV[5] the failure's time (ms since the epoch)
--
-- Reply: {attempts, first failure ms} when counted; 0 when fenced; -1 when the oldest
-- item is not ARGV[4]. Nothing changes unless the reply is counted.
--
-- The attempts hash holds, per partition, "<sha1 of the item> <attempts> <first ms>":
-- the count goes on while the same item stays the oldest (a crash or a hand-over in
-- between does not reset it); ack.lua and dead_letter.lua drop it with the item.

if not holds_claim() then
  return 0
end
if redis.call('LINDEX', KEYS[3], -1) ~= ARGV[4] then
  return -1
end
local digest = redis.sha1hex(ARGV[4])
local attempts, first = 1, ARGV[5]
local before = redis.call('HGET', KEYS[4], ARGV[2])
if before then
  local seen, count, since = string.match(before, '^(%x+) (%d+) (%d+)$')
  if seen == digest then
    attempts = tonumber(count) + 1
    first = since
  end
end
redis.call('HSET', KEYS[4], ARGV[2], digest .. ' ' .. attempts .. ' ' .. first)
return {attempts, first}
