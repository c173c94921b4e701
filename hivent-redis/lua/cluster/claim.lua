-- Cluster mode: claims, renews or gives up one partition, in the partition's slot.
-- A claim is an owner and a fencing token (hashes with one field, the partition
-- number, as the standalone scripts that check a claim read them) and a lease key
-- that expires by itself unless the owner renews it.
--
-- KEYS[1] {<s>:<n>}:hivent:owner   KEYS[2] {<s>:<n>}:hivent:token
-- KEYS[3] {<s>:<n>}:hivent:lease   KEYS[4] {<s>:<n>}:hivent:fence
-- ARGV[1] member id   ARGV[2] partition   ARGV[3] lease (ms)
-- ARGV[4] "claim" (the member should own it: renew, or take it when free or its
--         owner's lease ran out), "keep" (being worked on but no longer desired:
--         renew only) or "release" (give it up if held)   ARGV[5] the group channel
--
-- Reply: the token when the member holds the partition now; 0 when another member's
-- live claim holds it (or, for "keep", the member lost it); -1 when released.

if redis.replicate_commands then
  redis.replicate_commands()
end
local member, field, action = ARGV[1], ARGV[2], ARGV[4]
local owner = redis.call('HGET', KEYS[1], field)
if action == 'release' then
  if owner == member then
    redis.call('HDEL', KEYS[1], field)
    redis.call('HDEL', KEYS[2], field)
    redis.call('DEL', KEYS[3])
    redis.call('PUBLISH', ARGV[5], member)
    return -1
  end
  return 0
end
if owner == member then
  redis.call('SET', KEYS[3], member, 'PX', ARGV[3])
  return tonumber(redis.call('HGET', KEYS[2], field))
end
if action == 'keep' then
  return 0
end
if owner and redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
-- A counter that is gone (the node lost its data) starts again from the time in ms,
-- so new tokens stay above the ones handed out before.
if redis.call('EXISTS', KEYS[4]) == 0 then
  local time = redis.call('TIME')
  redis.call('SET', KEYS[4], tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
end
local token = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], field, member)
redis.call('HSET', KEYS[2], field, token)
redis.call('SET', KEYS[3], member, 'PX', ARGV[3])
return token
