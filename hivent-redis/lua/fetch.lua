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
-- only when the partition is empty), 0 when the claim is gone, or 1 when the byte
-- budget was spent before the partition was read (so the caller keeps it to read).
-- Items are read in steps from the oldest end, sized by the budget left and the size
-- of the items read so far, so the budget bounds what the script holds and sends; the
-- first item is read whatever its size, so a partition whose oldest item is larger
-- than the budget still moves.

local member = ARGV[1]
local max = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local read_any = false
local read_bytes = 0
local read_items = 0
local spent = false
local reply = {}
-- Every claim in two reads, not two per partition: a fetch of all partitions (the
-- periodic read for producers that send no wake-up) is most of a busy worker's tail
-- latency when it owns hundreds.
local fields = {}
for i = 4, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
end
local owners = redis.call('HMGET', KEYS[1], unpack(fields))
local tokens = redis.call('HMGET', KEYS[2], unpack(fields))
for i = 4, #ARGV, 2 do
  local n = (i - 4) / 2 + 1
  local token = ARGV[i + 1]
  local key = KEYS[n + 2]
  if spent then
    reply[#reply + 1] = 1
  elseif owners[n] == member and tokens[n] == token then
    local items = {}
    local from = -1
    local full = false
    while not full and #items < max do
      -- A first step of a few items; then as many as the budget left holds at the
      -- size seen so far, so small events take one or two reads and large ones are
      -- never read far past the budget.
      local want = math.min(16, max - #items)
      if read_items > 0 then
        local average = math.max(1, read_bytes / read_items)
        want = math.max(1, math.min(max - #items, math.floor(budget / average) + 1))
      end
      -- LRANGE lists newest first: the oldest of this step is its last element.
      local chunk = redis.call('LRANGE', key, from - want + 1, from)
      for j = #chunk, 1, -1 do
        local size = #chunk[j]
        if read_any and size > budget then
          full = true
          spent = true
          break
        end
        budget = budget - size
        read_bytes = read_bytes + size
        read_items = read_items + 1
        read_any = true
        items[#items + 1] = chunk[j]
      end
      if #chunk < want then
        break
      end
      from = from - want
    end
    if #items == 0 and spent then
      -- Stopped at its first item by the budget: not read, not empty.
      reply[#reply + 1] = 1
    else
      reply[#reply + 1] = items
    end
  else
    reply[#reply + 1] = 0
  end
end
return reply
