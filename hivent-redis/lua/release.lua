-- Gives up one partition, if the caller still holds its claim, and tells the group so
-- that the member that should own it claims it at once.
--
-- KEYS[1] <service>:hivent:owners   KEYS[2] <service>:hivent:tokens
-- ARGV[1] member id   ARGV[2] partition   ARGV[3] fencing token   ARGV[4] group channel
--
-- Reply: 1 when released; 0 when the claim was already gone (fenced), nothing changed.

if not holds_claim() then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
