-- ARGV: bell, seq, token, dead letters...
-- Removes a leased event for good, storing its dead letters with it. Returns 'ok' or 'fenced'.
local seq = tonumber(ARGV[2])
if not holds(seq, ARGV[3]) then
  return 'fenced'
end
for i = 4, #ARGV do
  redis.call('HSET', K_DEAD, redis.call('INCR', K_DEADSEQ), ARGV[i])
end
remove(seq, sched_of(seq) or {g = {}, s = 0})
return 'ok'
