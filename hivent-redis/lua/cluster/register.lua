-- Cluster mode: records that a service receives exactly the given events with its
-- partition count, in the registry slot ({hivent}).
--
-- KEYS[1] {hivent}:partition_count:<service>   KEYS[2] {hivent}:events:<service>
-- KEYS[3] {hivent}:registry   KEYS[4] {hivent}:services
-- KEYS[5..] {hivent}:receivers:<event>, one per event received
-- ARGV[1] service   ARGV[2] partition count   ARGV[3] the receivers key prefix
-- ARGV[4] the partition count the caller found the old partitions drained under
--         ("" when it did not look: the count is new or unchanged)
-- ARGV[5] the registry channel
--
-- Reply: {"ok"}; {"invalid", count}; {"moved", stored} when the stored count is not
-- the one the caller checked the partitions of (another registration came between):
-- nothing changed, the caller checks again.

local service = ARGV[1]
local requested = partition_count(ARGV[2])
if not requested then
  return { 'invalid', ARGV[2] }
end
local stored_text = redis.call('GET', KEYS[1])
local stored = partition_count(stored_text)
if stored and stored ~= requested and tostring(stored) ~= ARGV[4] then
  return { 'moved', stored }
end
local changed = stored ~= requested
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[4], service)
local wanted = {}
for i = 5, #KEYS do
  wanted[KEYS[i]] = true
end
for _, old in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[3] .. old
  if not wanted[key] then
    changed = redis.call('SREM', key, service) == 1 or changed
  end
end
redis.call('DEL', KEYS[2])
for i = 5, #KEYS do
  changed = redis.call('SADD', KEYS[i], service) == 1 or changed
  redis.call('SADD', KEYS[2], string.sub(KEYS[i], #ARGV[3] + 1))
end
if changed then
  move_registry_version(KEYS[3])
  redis.call('PUBLISH', ARGV[5], service)
end
return { 'ok' }
