-- Moves the oldest item of a partition to its dead letter queue and stores its failure
-- record beside it, in one step, if the caller still holds the partition's claim and
-- the item is the one it read.
--
-- KEYS[1] <service>:hivent:owners   KEYS[2] <service>:hivent:tokens
-- KEYS[3] <service>:<p>             KEYS[4] <service>:<p>:dead_letter
-- KEYS[5] <service>:hivent:failures:<p>   KEYS[6] <service>:hivent:attempts
-- ARGV[1] member id   ARGV[2] partition   ARGV[3] fencing token   ARGV[4] the raw item
-- ARGV[5] the failure record (JSON)
--
-- Reply: 1 when moved; 0 when fenced; -1 when the oldest item is not ARGV[4]. Nothing
-- changes unless the reply is 1.
--
-- The dead letter stays the raw item, as the Ruby gem writes it; its record is keyed
-- by the item's SHA-1 (identical items share one record).

if not holds_claim() then
  return 0
end
if redis.call('LINDEX', KEYS[3], -1) ~= ARGV[4] then
  return -1
end
-- RPOPLPUSH rather than LMOVE: the same script runs on Redis older than 6.2.
redis.call('RPOPLPUSH', KEYS[3], KEYS[4])
redis.call('HSET', KEYS[5], redis.sha1hex(ARGV[4]), ARGV[5])
redis.call('HDEL', KEYS[6], ARGV[2])
return 1
