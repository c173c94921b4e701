-- Reads dead letters of a partition with their failure records, oldest first.
--
-- KEYS[1] <service>:<p>:dead_letter   KEYS[2] <service>:hivent:failures:<p>
-- ARGV[1] how many items from the oldest to skip   ARGV[2] the most items to read
--
-- Reply: a flat array of item, record pairs; a record is false when there is none
-- (the item was moved by the Ruby gem or another tool).

local start, count = tonumber(ARGV[1]), tonumber(ARGV[2])
if count <= 0 then
  return {}
end
-- Index -1 is the oldest item.
local items = redis.call('LRANGE', KEYS[1], -(start + count), -(start + 1))
local reply = {}
for i = #items, 1, -1 do
  reply[#reply + 1] = items[i]
  reply[#reply + 1] = redis.call('HGET', KEYS[2], redis.sha1hex(items[i]))
end
return reply
