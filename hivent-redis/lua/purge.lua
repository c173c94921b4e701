-- Deletes dead letters of a partition and their failure records.
--
-- KEYS[1] <service>:<p>:dead_letter   KEYS[2] <service>:hivent:failures:<p>
-- ARGV[1] 'oldest' then ARGV[2] the most items to delete, or 'items' then ARGV[2..]
-- the items to delete, oldest first (see pick_dead_letters.lua)
--
-- Reply: how many items were deleted.

return #pick(KEYS[1], KEYS[2], ARGV[1], 2)
