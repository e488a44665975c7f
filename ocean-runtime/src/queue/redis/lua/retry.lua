-- ARGV: bell, seq, token, delay (ms).
-- Gives a leased event back, due after the delay, still at the head of its groups.
-- Returns 'ok' or 'fenced'.
local seq = tonumber(ARGV[2])
if not holds(seq, ARGV[3]) then
  return 'fenced'
end
redis.call('HDEL', K_LEASE, seq)
redis.call('ZREM', K_EXPIRY, seq)
local delay = tonumber(ARGV[4])
if delay <= 0 then
  redis.call('ZADD', K_READY, seq, seq)
  redis.call('PUBLISH', BELL, '1')
else
  redis.call('ZADD', K_DELAYED, now_ms() + delay, seq)
end
return 'ok'
