-- Shared by the scripts that read `<service>:partition_count` (prepended to each by
-- script.rs, since Redis scripts cannot import one another).
--
-- The stored count as a number when it is a whole number from 1 to 4294967295, else
-- nil: a missing, empty, zero, negative or non-numeric value is no partition count.
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

