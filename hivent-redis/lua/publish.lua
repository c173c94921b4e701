-- Stores one copy of each event in a partition of every service that receives it.
--
-- KEYS: none (the receiving services are only known once their sets are read; like
--       the Ruby gem's script, this does not run on Redis Cluster).
-- ARGV[1] this call's marker key (hivent:emitted:<call id>)
-- ARGV[2] marker lifetime in ms
-- ARGV[3] partition count suffix (:partition_count)
-- ARGV[4] partition separator (:)              ARGV[5] wake channel suffix
-- ARGV[6] the wildcard set (*)
-- ARGV[7..] triples: event name, partition hash (decimal u32), event JSON
--
-- Reply: {"ok", n1, n2, ...}        stored now; ni services received event i
--        {"already", n1, n2, ...}   an earlier try of this call stored it; nothing now
--        {"missing", service, event, found}   nothing was written; found is nil
--                                  when the count key is absent
--        {"wrongtype", key, type}  a key the call reads or pushes to is of another
--                                  type (a colliding name): nothing was written
--
-- Every check (key types, partition counts) comes before the first write, so a failed
-- check leaves nothing behind. The call is atomic, so one marker per call makes a
-- retry after a lost reply harmless: the client sends the same call id again, and a
-- call whose marker exists writes nothing. `partition_count` comes from
-- partition_count.lua.
--
-- The happy path issues as few commands as it can, since each costs Redis time: the
-- key types are asked for (TYPE) only when a read fails, or, for the lists, only when
-- a call pushes to more than one (one push that fails is then the first write, and
-- nothing is left behind); the marker is set with NX once every check passed, which
-- also says whether an earlier try stored the call; the events of one list go in one
-- variadic LPUSH, in emit order; each receiving service gets one wake-up per call,
-- naming the partitions written (`0,3`), so its idle owners read just those.

local marker = ARGV[1]
local marker_ttl = ARGV[2]
local count_suffix = ARGV[3]
local separator = ARGV[4]
local wake_suffix = ARGV[5]
local wildcard = ARGV[6]

local function type_of(key)
  return redis.call('TYPE', key)['ok']
end

local function failed(reply)
  return type(reply) == 'table' and reply['err'] ~= nil
end

-- The key of a failed read: the wildcard set or the event's own.
local function wrong_set(name)
  for _, key in ipairs({ wildcard, name }) do
    local found = type_of(key)
    if found ~= 'set' and found ~= 'none' then
      return { 'wrongtype', key, found }
    end
  end
  return nil
end

-- Receivers of each event name, read once per name.
local receivers = {}

-- The common case, one event for one receiving service, straight through: the same
-- checks and writes as below without the tables the general case builds (measured:
-- a quarter of a single emit's Redis time was that bookkeeping).
if #ARGV == 9 then
  local name, json = ARGV[7], ARGV[9]
  local found = redis.pcall('SUNION', name, wildcard)
  if failed(found) then
    return wrong_set(name) or redis.error_reply(found['err'])
  end
  if #found == 0 then
    -- Nobody receives it: nothing to store, so nothing to guard against a retry.
    return { 'ok', 0 }
  end
  if #found == 1 then
    local service = found[1]
    local key = service .. count_suffix
    local text = redis.pcall('GET', key)
    local count = not failed(text) and partition_count(text)
    if not count then
      if redis.call('EXISTS', marker) == 1 then
        return { 'already', 1 }
      end
      if failed(text) then
        return { 'wrongtype', key, type_of(key) }
      end
      return { 'missing', service, name, text }
    end
    local partition = string.format('%d', tonumber(ARGV[8]) % count)
    local list = service .. separator .. partition
    if not redis.call('SET', marker, '1', 'NX', 'PX', marker_ttl) then
      return { 'already', 1 }
    end
    if failed(redis.pcall('LPUSH', list, json)) then
      redis.call('DEL', marker)
      return { 'wrongtype', list, type_of(list) }
    end
    redis.call('PUBLISH', service .. wake_suffix, partition)
    return { 'ok', 1 }
  end
  -- Several services: the general case below, with the receivers already read.
  receivers[name] = found
end

for i = 7, #ARGV, 3 do
  local name = ARGV[i]
  if receivers[name] == nil then
    local found = redis.pcall('SUNION', name, wildcard)
    if failed(found) then
      return wrong_set(name) or redis.error_reply(found['err'])
    end
    receivers[name] = found
  end
end

local function counts_reply(tag)
  local reply = { tag }
  for i = 7, #ARGV, 3 do
    reply[#reply + 1] = #receivers[ARGV[i]]
  end
  return reply
end

-- A check that fails after the receivers were read: unless an earlier try of this call
-- stored it (its marker exists), nothing was written and the reply says why.
local function refuse(reply)
  if redis.call('EXISTS', marker) == 1 then
    return counts_reply('already')
  end
  return reply
end

local counts = {}
for i = 7, #ARGV, 3 do
  for _, service in ipairs(receivers[ARGV[i]]) do
    if counts[service] == nil then
      local key = service .. count_suffix
      local text = redis.pcall('GET', key)
      if failed(text) then
        return refuse({ 'wrongtype', key, type_of(key) })
      end
      local count = partition_count(text)
      if not count then
        return refuse({ 'missing', service, ARGV[i], text })
      end
      counts[service] = count
    end
  end
end

-- The target lists in the order they are first written, each with its events' JSON
-- in emit order, and the partitions written per service (for its wake-up).
local lists = {}
local order = {}
local woken = {}
local wake_order = {}
-- Per service, partition → its list of this call's events (names built once).
local by_partition = {}
for i = 7, #ARGV, 3 do
  local hash = tonumber(ARGV[i + 1])
  local json = ARGV[i + 2]
  for _, service in ipairs(receivers[ARGV[i]]) do
    local partition = hash % counts[service]
    local partitions = by_partition[service]
    if partitions == nil then
      partitions = {}
      by_partition[service] = partitions
      wake_order[#wake_order + 1] = service
    end
    local list = partitions[partition]
    if list == nil then
      local key = service .. separator .. string.format('%d', partition)
      list = {}
      partitions[partition] = list
      lists[key] = list
      order[#order + 1] = key
      local written = woken[service] or {}
      written[#written + 1] = string.format('%d', partition)
      woken[service] = written
    end
    list[#list + 1] = json
  end
end

if #order > 1 then
  for _, key in ipairs(order) do
    local found = type_of(key)
    if found ~= 'list' and found ~= 'none' then
      return refuse({ 'wrongtype', key, found })
    end
  end
end

if not redis.call('SET', marker, '1', 'NX', 'PX', marker_ttl) then
  return counts_reply('already')
end

for _, key in ipairs(order) do
  local items = lists[key]
  for from = 1, #items, 1000 do
    local pushed = redis.pcall('LPUSH', key, unpack(items, from, math.min(from + 999, #items)))
    if failed(pushed) then
      -- Only the first push of a call to a single list can fail (several lists were
      -- checked above), so nothing was written but the marker.
      redis.call('DEL', marker)
      return { 'wrongtype', key, type_of(key) }
    end
  end
end
for _, service in ipairs(wake_order) do
  redis.call('PUBLISH', service .. wake_suffix, table.concat(woken[service], ','))
end
return counts_reply('ok')
