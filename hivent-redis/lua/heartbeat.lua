-- Renews a membership, releases partitions the member should no longer own and claims
-- the ones it should.
--
-- KEYS[1] <service>:hivent:members   KEYS[2] <service>:hivent:owners
-- KEYS[3] <service>:hivent:tokens    KEYS[4] <service>:hivent:fence
-- KEYS[5] <service>:partition_count KEYS[6] <service>:hivent:heartbeats
-- ARGV[1] member id   ARGV[2] membership lifetime in ms   ARGV[3] the group channel
-- ARGV[4] the partitions whose batches the member is working on, comma-separated
--         ("" for none): never released here; the member hands each over after
--         the event in hand, or once its handled events are acknowledged
-- ARGV[5] the member's heartbeat interval in ms, kept beside its last heartbeat
--         so that `status` can tell a member that stopped heartbeating
-- ARGV[6..] the partitions the member owns as far as it knows
--
-- Reply: {"owned", p1, token1, keep1, ...}   what the member owns now; keep is 0 for
--                                           the partition it should hand over
--        {"unregistered", found}              no valid partition count; found is nil
--                                           when the key is absent
--
-- When the group changed (this member joined or rejoined, others expired, or it
-- released partitions) the script publishes its member id on the group channel, so
-- the others heartbeat at once instead of at their next interval.

-- Redis before 5 refuses writes after TIME unless effects are replicated.
if redis.replicate_commands then
  redis.replicate_commands()
end

local member = ARGV[1]
local count_text = redis.call('GET', KEYS[5])
local count = partition_count(count_text)
if not count then
  return { 'unregistered', count_text }
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- A fence counter that is gone (Redis lost its data) starts again from the time in ms,
-- so new tokens stay above every token handed out before and no stale batch of a
-- member can present a token that is valid again.
if redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('SET', KEYS[4], now)
end
local joined = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), member)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('HSET', KEYS[6], member, now .. ' ' .. ARGV[5])
for _, other in ipairs(gone) do
  redis.call('HDEL', KEYS[6], other)
end

-- Byte order, as Rust sorts strings: Lua's `<` follows the server's locale.
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

local live = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(live, before)
local is_live = {}
local index = nil
for i, m in ipairs(live) do
  is_live[m] = true
  if m == member then
    index = i - 1
  end
end
local n = #live

local function desired(p)
  return p < count and p % n == index
end

local working = {}
for field in string.gmatch(ARGV[4], '[^,]+') do
  working[field] = true
end
local changed = joined > 0 or expired > 0
local reply = { 'owned' }
local kept = {}

-- What the member believes it owns: keep it, report it for hand-over (the partition
-- being worked on), or release it. Only these and the desired partitions are read, so
-- a heartbeat's work follows the member's share, not the partition count.
for i = 6, #ARGV do
  local field = ARGV[i]
  if not kept[field] and redis.call('HGET', KEYS[2], field) == member then
    local keep = desired(tonumber(field))
    if keep or working[field] then
      kept[field] = true
      reply[#reply + 1] = field
      reply[#reply + 1] = redis.call('HGET', KEYS[3], field)
      reply[#reply + 1] = keep and 1 or 0
    else
      redis.call('HDEL', KEYS[2], field)
      redis.call('HDEL', KEYS[3], field)
      changed = true
    end
  end
end

-- What it should own: claim what is free or held by a member that is no longer live
-- (which voids that member's claim: its writes are fenced from now on).
for p = index, count - 1, n do
  local field = string.format('%d', p)
  if not kept[field] then
    local owner = redis.call('HGET', KEYS[2], field)
    local token = nil
    if owner == member then
      token = redis.call('HGET', KEYS[3], field)
    elseif not owner or not is_live[owner] then
      token = redis.call('INCR', KEYS[4])
      redis.call('HSET', KEYS[2], field, member)
      redis.call('HSET', KEYS[3], field, token)
    end
    if token then
      reply[#reply + 1] = field
      reply[#reply + 1] = token
      reply[#reply + 1] = 1
    end
  end
end

if changed then
  redis.call('PUBLISH', ARGV[3], member)
end
return reply
