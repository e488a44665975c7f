-- ARGV: bell, replica, lease (ms).
-- Leases the ready event with the lowest sequence number, dropping superseded ones on the way.
-- Returns {'lease', seq, token, deliveries, record} or {'none', ms until a retry is due, or -1}.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, 64)
for _, s in ipairs(due) do
  redis.call('ZREM', K_DELAYED, s)
  redis.call('ZADD', K_READY, s, s)
end
while true do
  local top = redis.call('ZPOPMIN', K_READY)
  if #top == 0 then
    local nxt = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
    if #nxt == 0 then
      return {'none', -1}
    end
    return {'none', math.max(tonumber(nxt[2]) - now, 0)}
  end
  local seq = tonumber(top[1])
  local sch = sched_of(seq)
  if sch then
    if sch.s == 1 and redis.call('HGET', K_LATEST, sch.ks) ~= tostring(seq) then
      remove(seq, sch)
      redis.call('HINCRBY', K_STATS, 'superseded', 1)
    else
      sch.d = sch.d + 1
      redis.call('HSET', K_SCHED, seq, cjson.encode(sch))
      local token = redis.call('INCR', K_FENCE)
      redis.call('HSET', K_LEASE, seq, token .. ' ' .. ARGV[2])
      redis.call('ZADD', K_EXPIRY, now + tonumber(ARGV[3]), seq)
      return {'lease', seq, token, sch.d, redis.call('HGET', K_EV, seq)}
    end
  end
end
