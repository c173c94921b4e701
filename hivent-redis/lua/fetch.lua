-- Reads the oldest items of the partitions a member believes it owns, each only if
-- its claim still holds, in one atomic step: a batch is never read under a claim that
-- was already voided (by a take-over or a dead-letter replay).
--
-- KEYS[1] <service>:hivent:owners   KEYS[2] <service>:hivent:tokens
-- KEYS[3..] the partitions' lists, in the order of the pairs below
-- ARGV[1] member id   ARGV[2] most items per partition   ARGV[3] most bytes in all
-- ARGV[4..] pairs: partition, fencing token
--
-- Reply: one element per partition: the list of its oldest items, oldest first (empty
-- when the partition is empty or the byte budget is spent), or 0 when the claim is gone.
-- Items are read in small steps from the oldest end, so the budget bounds what the
-- script holds and sends; the first item is read whatever its size, so a partition
-- whose oldest item is larger than the budget still moves.

local member = ARGV[1]
local max = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local step = 16
local read_any = false
local reply = {}
for i = 4, #ARGV, 2 do
  local field, token = ARGV[i], ARGV[i + 1]
  local key = KEYS[(i - 4) / 2 + 3]
  if redis.call('HGET', KEYS[1], field) == member and redis.call('HGET', KEYS[2], field) == token then
    local items = {}
    local from = -1
    local full = false
    while not full and #items < max do
      local want = math.min(step, max - #items)
      -- LRANGE lists newest first: the oldest of this step is its last element.
      local chunk = redis.call('LRANGE', key, from - want + 1, from)
      for j = #chunk, 1, -1 do
        local size = #chunk[j]
        if read_any and size > budget then
          full = true
          break
        end
        budget = budget - size
        read_any = true
        items[#items + 1] = chunk[j]
      end
      if #chunk < want then
        break
      end
      from = from - want
    end
    reply[#reply + 1] = items
  else
    reply[#reply + 1] = 0
  end
end
return reply
