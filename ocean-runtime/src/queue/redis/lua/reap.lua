-- ARGV: bell, most takeovers.
-- Clears expired leases: each event goes back to the ready set, still at the head of its groups,
-- or, past the most takeovers, becomes a dead letter. Returns {seq, former holder, 'ready'/'dead'}
-- for each.
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now, 'LIMIT', 0, 256)
local out = {}
for _, s in ipairs(expired) do
  local seq = tonumber(s)
  local holder = redis.call('HGET', K_LEASE, seq) or ''
  redis.call('HDEL', K_LEASE, seq)
  redis.call('ZREM', K_EXPIRY, seq)
  local sch = sched_of(seq)
  if sch then
    sch.k = sch.k + 1
    redis.call('HINCRBY', K_STATS, 'takeovers', 1)
    if sch.k > tonumber(ARGV[2]) then
      local meta = cjson.encode({
        error = 'the event was taken over ' .. sch.k .. ' times (its lease expired each time; ' ..
          'OCEAN__QUEUE__MAX_TAKEOVERS is ' .. ARGV[2] .. ')',
        attempts = sch.d, failed_at_ms = now})
      redis.call('HSET', K_DEAD, redis.call('INCR', K_DEADSEQ),
        'T' .. meta .. '\n' .. redis.call('HGET', K_EV, seq))
      remove(seq, sch)
      redis.call('HINCRBY', K_STATS, 'given_up', 1)
      out[#out + 1] = {seq, holder, 'dead'}
    else
      redis.call('HSET', K_SCHED, seq, cjson.encode(sch))
      redis.call('ZADD', K_READY, seq, seq)
      out[#out + 1] = {seq, holder, 'ready'}
    end
  end
end
if #out > 0 then
  redis.call('PUBLISH', BELL, '1')
end
return out
