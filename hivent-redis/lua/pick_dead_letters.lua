-- Takes dead letters out of a queue (prepended to replay.lua and purge.lua).
--
-- pick(queue, records, mode, from): mode 'oldest' takes the ARGV[from] oldest items;
-- mode 'items' takes, for each of ARGV[from..] (oldest first), its oldest stored
-- copy, skipping items not stored. Their failure records are deleted with them, and
-- the records hash goes too once the queue is empty (no record outlives its item).
-- Returns the taken items, oldest first.

local function push_all(command, key, items)
  for i = 1, #items, 1000 do
    redis.call(command, key, unpack(items, i, math.min(i + 999, #items)))
  end
end

local function pick(queue, records, mode, from)
  local taken = {}
  if mode == 'oldest' then
    local n = math.min(tonumber(ARGV[from]), redis.call('LLEN', queue))
    if n > 0 then
      -- LRANGE lists newest first: the oldest is the last element.
      local items = redis.call('LRANGE', queue, -n, -1)
      for i = #items, 1, -1 do
        taken[#taken + 1] = items[i]
      end
      redis.call('LTRIM', queue, 0, -(n + 1))
    end
  else
    local wanted = {}
    for i = from, #ARGV do
      wanted[ARGV[i]] = (wanted[ARGV[i]] or 0) + 1
    end
    -- Newest first, as the queue lists it; the oldest copies are taken first.
    local all = redis.call('LRANGE', queue, 0, -1)
    local is_taken = {}
    for i = #all, 1, -1 do
      local item = all[i]
      if (wanted[item] or 0) > 0 then
        wanted[item] = wanted[item] - 1
        taken[#taken + 1] = item
        is_taken[i] = true
      end
    end
    if #taken > 0 then
      local kept = {}
      for i = 1, #all do
        if not is_taken[i] then
          kept[#kept + 1] = all[i]
        end
      end
      redis.call('DEL', queue)
      push_all('RPUSH', queue, kept)
    end
  end
  if redis.call('LLEN', queue) == 0 then
    redis.call('DEL', records)
  else
    for i = 1, #taken do
      redis.call('HDEL', records, redis.sha1hex(taken[i]))
    end
  end
  return taken
end
