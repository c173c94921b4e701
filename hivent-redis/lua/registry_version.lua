-- Shared by the registration scripts, standalone and cluster (prepended to each by
-- script.rs and cluster_script.rs, since Redis scripts cannot import one another).
--
-- Moves the registry version at `key` on to a version never seen before, even after
-- Redis lost its data: the time in µs, or one past the stored version if the clock is
-- behind it.
local function move_registry_version(key)
  local time = redis.call('TIME')
  local version = tonumber(time[1]) * 1000000 + tonumber(time[2])
  local previous = tonumber(redis.call('GET', key))
  if previous and previous >= version then
    version = previous + 1
  end
  redis.call('SET', key, string.format('%.0f', version))
end
