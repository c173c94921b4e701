-- Removes the oldest items of one or more partitions, each only if the caller still
-- holds its claim: one call acknowledges every batch a fetch handled.
--
-- KEYS[1] <service>:hivent:owners   KEYS[2] <service>:hivent:tokens
-- KEYS[3] <service>:hivent:attempts KEYS[4] <service>:hivent:rates
-- KEYS[5..] the partitions' lists, in the order below
-- ARGV[1] member id   ARGV[2..] triples: partition, fencing token, count
--
-- Reply: one element per partition: 1 when removed; 0 when its claim is gone (fenced)
-- and nothing of it changed.
--
-- Only the owner removes items and producers push on the left, so the `count`
-- rightmost items are exactly the ones the owner fetched and processed. The failed
-- attempts counted for the oldest item (attempt.lua) go with it. Each partition's
-- processing rate (`<rate> <at ms>`, events per second decaying with a time constant of
-- 10 s, as `hivent_core::bumped_rate` computes it) takes the count in.

-- Redis before 5 refuses writes after TIME unless effects are replicated.
if redis.replicate_commands then
  redis.replicate_commands()
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tau = 10000

local member = ARGV[1]
local fields = {}
for i = 2, #ARGV, 3 do
  fields[#fields + 1] = ARGV[i]
end
local owners = redis.call('HMGET', KEYS[1], unpack(fields))
local tokens = redis.call('HMGET', KEYS[2], unpack(fields))
local rates = redis.call('HMGET', KEYS[4], unpack(fields))
local reply = {}
for n, field in ipairs(fields) do
  local at = 2 + (n - 1) * 3
  if owners[n] == member and tokens[n] == ARGV[at + 1] then
    local count = tonumber(ARGV[at + 2])
    redis.call('LTRIM', KEYS[n + 4], 0, -(count + 1))
    redis.call('HDEL', KEYS[3], field)
    local rate, at_ms = 0, now
    if rates[n] then
      local space = string.find(rates[n], ' ', 1, true)
      if space then
        rate = tonumber(string.sub(rates[n], 1, space - 1)) or 0
        at_ms = tonumber(string.sub(rates[n], space + 1)) or now
      end
    end
    rate = rate * math.exp(-math.max(now - at_ms, 0) / tau) + count * 1000 / tau
    redis.call('HSET', KEYS[4], field, string.format('%.6f', rate) .. ' ' .. now)
    reply[n] = 1
  else
    reply[n] = 0
  end
end
return reply
