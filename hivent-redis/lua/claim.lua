-- Shared by the scripts that write under a partition's claim (prepended to each by
-- script.rs, since Redis scripts cannot import one another).
--
-- Each of them is called with KEYS[1] <service>:hivent:owners, KEYS[2]
-- <service>:hivent:tokens, ARGV[1] the member id, ARGV[2] the partition and ARGV[3]
-- the fencing token its batch was read under.

-- Whether the caller still holds the partition under that claim.
local function holds_claim()
  return redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] and redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3]
end
