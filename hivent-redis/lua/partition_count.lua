-- Shared by the scripts that read `<service>:partition_count` (prepended to each by
-- script.rs, since Redis scripts cannot import one another).
--
-- The stored count as a number when it is a whole number from 1 to 1024 (hivent's
-- maximum partition count, MAX_PARTITION_COUNT in hivent-core), else nil: a missing,
-- empty, zero, negative, non-numeric or larger value is no partition count. The bound
-- keeps every script's work per call small whatever is stored.
local function partition_count(text)
  if type(text) ~= 'string' or #text > 4 or not string.match(text, '^[1-9]%d*$') then
    return nil
  end
  local n = tonumber(text)
  if n > 1024 then
    return nil
  end
  return n
end

