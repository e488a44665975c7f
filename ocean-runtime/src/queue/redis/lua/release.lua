-- ARGV: bell, then seq and token pairs.
-- Gives leases back at once (shutdown): the events are ready again at the head of their groups.
-- Returns how many were given back.
local n = 0
for i = 2, #ARGV, 2 do
  if holds(tonumber(ARGV[i]), ARGV[i + 1]) then
    redis.call('HDEL', K_LEASE, ARGV[i])
    redis.call('ZREM', K_EXPIRY, ARGV[i])
    redis.call('ZADD', K_READY, ARGV[i], ARGV[i])
    n = n + 1
  end
end
if n > 0 then
  redis.call('PUBLISH', BELL, '1')
end
return n
