-- ARGV: bell, seq, token, replica to lease the next ready event to ('' for none), lease (ms),
-- dead letters...
-- Removes a leased event for good, storing its dead letters with it. Returns 'fenced', or {'ok'}
-- followed, when a replica is named, by what lease_next answered for it (the worker's next event
-- in the same round trip).
local seq = tonumber(ARGV[2])
if not holds(seq, ARGV[3]) then
  return 'fenced'
end
for i = 6, #ARGV do
  redis.call('HSET', K_DEAD, redis.call('INCR', K_DEADSEQ), ARGV[i])
end
remove(seq, sched_of(seq) or {g = {}, s = 0})
if ARGV[4] == '' then
  return {'ok'}
end
local nxt = lease_next(ARGV[4], tonumber(ARGV[5]))
table.insert(nxt, 1, 'ok')
return nxt
