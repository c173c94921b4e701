-- Cluster mode: acknowledges one partition's handled events at most once, even when
-- the client sends the call again (redis-rs's cluster client resends a command after
-- a dropped connection or a redirect). ack.lua, prepended as the function
-- `acknowledge`, does the fenced trim; this records how many items were acknowledged
-- under the claim's token, and a call whose count is already in takes nothing more.
--
-- KEYS[1..5] as ack.lua for one partition   KEYS[6] {<s>:<n>}:hivent:acked
-- ARGV[1..4] as ack.lua for one partition (member, partition, token, count)
-- ARGV[5] how many items the caller acknowledged under this token before this call
--
-- Reply: as ack.lua: {1} when removed (now or by an earlier send of this call), {0}
-- when fenced.

local before = tonumber(ARGV[5])
-- ack.lua reads ARGV in triples after the member: it must not see this one.
ARGV[5] = nil
local field, token, count = ARGV[2], ARGV[3], tonumber(ARGV[4])
local done = 0
local seen = redis.call('HGET', KEYS[6], field)
if seen then
  local seen_token, seen_count = string.match(seen, '^(%d+) (%d+)$')
  if seen_token == token then
    done = tonumber(seen_count)
  end
end
if count > 0 and done == before + count then
  return { 1 }
end
local reply = acknowledge()
if reply[1] == 1 then
  redis.call('HSET', KEYS[6], field, token .. ' ' .. (before + count))
end
return reply
