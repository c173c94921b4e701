-- Moves the oldest item of a partition to its dead letter queue in one step, if the
-- caller still holds the partition's claim and the item is the one it read.
--
-- KEYS[1] <service>:hivent:owners   KEYS[2] <service>:hivent:tokens
-- KEYS[3] <service>:<p>             KEYS[4] <service>:<p>:dead_letter
-- ARGV[1] member id   ARGV[2] partition   ARGV[3] fencing token   ARGV[4] the raw item
--
-- Reply: 1 when moved; 0 when fenced; -1 when the oldest item is not ARGV[4]. Nothing
-- changes unless the reply is 1.

if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[1] or redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then
  return 0
end
if redis.call('LINDEX', KEYS[3], -1) ~= ARGV[4] then
  return -1
end
-- RPOPLPUSH rather than LMOVE: the same script runs on Redis older than 6.2.
redis.call('RPOPLPUSH', KEYS[3], KEYS[4])
return 1
