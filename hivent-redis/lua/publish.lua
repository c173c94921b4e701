-- Stores one copy of each event in a partition of every service that receives it.
--
-- KEYS: none (the receiving services are only known once their sets are read; like
--       the Ruby gem's script, this does not run on Redis Cluster).
-- ARGV[1] marker prefix (hivent:emitted:)      ARGV[2] marker lifetime in ms
-- ARGV[3] partition count suffix (:partition_count)
-- ARGV[4] partition separator (:)              ARGV[5] wake channel suffix
-- ARGV[6] the wildcard set (*)
-- ARGV[7..] triples: event name, partition hash (decimal u32), event JSON
--
-- Reply: {"ok", stored, already}   stored: events pushed now; already: events whose
--                                  marker showed they were stored by an earlier try
--        {"missing", service, event, found}   nothing was written; found is nil
--                                  when the count key is absent
--
-- Every count is checked before the first write, so a service without a partition
-- count makes the whole call a no-op. The marker (the SHA-1 of the JSON) makes a
-- retry after a lost reply harmless: the JSON carries the event_uuid, so equal JSON
-- is the same event.

local marker_prefix = ARGV[1]
local marker_ttl = ARGV[2]
local count_suffix = ARGV[3]
local separator = ARGV[4]
local wake_suffix = ARGV[5]
local wildcard = ARGV[6]

local function partition_count(text)
  if type(text) ~= 'string' or #text > 10 or not string.match(text, '^[1-9]%d*$') then
    return nil
  end
  local n = tonumber(text)
  if n > 4294967295 then
    return nil
  end
  return n
end

local counts = {}
local pending = {}
local seen = {}
local already = 0
for i = 7, #ARGV, 3 do
  local name, hash, json = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local marker = marker_prefix .. redis.sha1hex(json)
  if seen[marker] or redis.call('EXISTS', marker) == 1 then
    already = already + 1
  else
    seen[marker] = true
    local services = redis.call('SUNION', name, wildcard)
    for _, service in ipairs(services) do
      if counts[service] == nil then
        local text = redis.call('GET', service .. count_suffix)
        local count = partition_count(text)
        if not count then
          return { 'missing', service, name, text }
        end
        counts[service] = count
      end
    end
    pending[#pending + 1] = { marker, hash, json, services }
  end
end

local woken = {}
for _, event in ipairs(pending) do
  local marker, hash, json, services = event[1], event[2], event[3], event[4]
  for _, service in ipairs(services) do
    local partition = hash % counts[service]
    redis.call('LPUSH', service .. separator .. string.format('%d', partition), json)
    woken[service] = partition
  end
  redis.call('SET', marker, '1', 'PX', marker_ttl)
end
for service, partition in pairs(woken) do
  redis.call('PUBLISH', service .. wake_suffix, string.format('%d', partition))
end
return { 'ok', #pending, already }
