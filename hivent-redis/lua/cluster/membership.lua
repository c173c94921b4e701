-- Cluster mode: renews (or ends) a membership in its service's group slot ({<service>}).
-- The partitions are claimed afterwards, each in its own slot (claim.lua).
--
-- KEYS[1] {<service>}:hivent:members   KEYS[2] {<service>}:hivent:heartbeats
-- ARGV[1] member id   ARGV[2] membership lifetime (ms), or "leave"
-- ARGV[3] the group channel   ARGV[4] the heartbeat interval (ms)
--
-- Reply: {changed, member1, member2, ...}: changed is 1 when the group changed (this
-- member joined or left, others expired; then the script published on the group
-- channel), followed by the live members.

if redis.replicate_commands then
  redis.replicate_commands()
end
local member = ARGV[1]
local changed = false
if ARGV[2] == 'leave' then
  changed = redis.call('ZREM', KEYS[1], member) == 1
  redis.call('HDEL', KEYS[2], member)
else
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  changed = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), member) == 1
  for _, other in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
    redis.call('HDEL', KEYS[2], other)
    changed = true
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  redis.call('HSET', KEYS[2], member, now .. ' ' .. ARGV[4])
end
if changed then
  redis.call('PUBLISH', ARGV[3], member)
end
local reply = { changed and 1 or 0 }
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  reply[#reply + 1] = m
end
return reply
