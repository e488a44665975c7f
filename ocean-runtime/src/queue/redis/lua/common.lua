-- Shared by every script of the Redis queue (prepended to each).
--
-- KEYS, always all of them and in this order, every one under the integration's hash tag:
--   seq      INCR counter of event sequence numbers
--   ev       hash  seq -> the event's record (body, headers, delivery id: byte-exact)
--   sched    hash  seq -> cjson {g = groups, s = supersedable (0/1), ks = key set, d = deliveries,
--                          k = takeovers}
--   groups   zset (score 0) of "<group>:<seq, 16 digits>": a group's head is its first member
--   ready    zset seq -> seq: events heading all their groups, neither leased nor delayed
--   delayed  zset seq -> due time (ms): retried events, still at the head of their groups
--   lease    hash  seq -> "<fencing token> <replica>"
--   expiry   zset seq -> lease deadline (ms, Redis's clock)
--   latest   hash  key set -> newest supersedable seq with exactly those groups
--   dlv      hash  delivery key -> event id
--   dlvt     zset delivery key -> when accepted (ms)
--   dead     hash  id -> dead letter
--   deadseq  INCR counter of dead letter ids
--   fence    INCR counter of fencing tokens
--   all      zset seq -> when received (ms): depth and oldest event
--   stats    hash  counters: superseded, takeovers, given_up
-- ARGV[1] is always the doorbell channel: a message there tells idle workers to look again.
-- Group names arrive hex-encoded, so ':' and ';' never occur in them.
local K_SEQ, K_EV, K_SCHED, K_GROUPS, K_READY, K_DELAYED, K_LEASE, K_EXPIRY = KEYS[1], KEYS[2],
  KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_LATEST, K_DLV, K_DLVT, K_DEAD, K_DEADSEQ, K_FENCE, K_ALL, K_STATS = KEYS[9], KEYS[10],
  KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15], KEYS[16]
local BELL = ARGV[1]

-- Redis's clock, in milliseconds: every deadline is taken from it, never from a replica's.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function member(g, seq)
  return g .. ':' .. string.format('%016d', seq)
end

local function head_of(g)
  return redis.call('ZRANGEBYLEX', K_GROUPS, '[' .. g .. ':', '(' .. g .. ';', 'LIMIT', 0, 1)[1]
end

local function sched_of(seq)
  local s = redis.call('HGET', K_SCHED, seq)
  if s then
    return cjson.decode(s)
  end
  return nil
end

local function heads_all(seq, sch)
  for _, g in ipairs(sch.g) do
    if head_of(g) ~= member(g, seq) then
      return false
    end
  end
  return true
end

-- Whether the lease of seq carries this fencing token (a settle with a stale one is refused).
local function holds(seq, token)
  local l = redis.call('HGET', K_LEASE, seq)
  return l and string.match(l, '^(%d+)') == token
end

-- Removes event seq for good; the next event of each of its groups becomes ready when it now
-- heads all of its own groups.
local function remove(seq, sch)
  redis.call('HDEL', K_EV, seq)
  redis.call('HDEL', K_SCHED, seq)
  redis.call('HDEL', K_LEASE, seq)
  redis.call('ZREM', K_EXPIRY, seq)
  redis.call('ZREM', K_ALL, seq)
  redis.call('ZREM', K_READY, seq)
  redis.call('ZREM', K_DELAYED, seq)
  if sch.s == 1 and redis.call('HGET', K_LATEST, sch.ks) == tostring(seq) then
    redis.call('HDEL', K_LATEST, sch.ks)
  end
  local woke = false
  for _, g in ipairs(sch.g) do
    redis.call('ZREM', K_GROUPS, member(g, seq))
    local h = head_of(g)
    if h then
      local next_seq = tonumber(string.sub(h, #g + 2))
      local next_sch = sched_of(next_seq)
      if next_sch and heads_all(next_seq, next_sch) then
        redis.call('ZADD', K_READY, next_seq, next_seq)
        woke = true
      end
    end
  end
  if woke then
    redis.call('PUBLISH', BELL, '1')
  end
end

-- Stores an event behind the events of its groups. Returns its seq and whether it is ready at
-- once (the caller rings the doorbell), or nil when the queue is full.
local function enqueue(record, capacity, supersedable, groups, now)
  if redis.call('ZCARD', K_ALL) >= capacity then
    return nil
  end
  local seq = redis.call('INCR', K_SEQ)
  local sch = {g = groups, d = 0, k = 0, s = 0}
  if supersedable == '1' and #groups > 0 then
    sch.s = 1
    sch.ks = table.concat(groups, ',')
    redis.call('HSET', K_LATEST, sch.ks, seq)
  end
  redis.call('HSET', K_EV, seq, record)
  redis.call('HSET', K_SCHED, seq, cjson.encode(sch))
  redis.call('ZADD', K_ALL, now, seq)
  for _, g in ipairs(groups) do
    redis.call('ZADD', K_GROUPS, 0, member(g, seq))
  end
  local ready = heads_all(seq, sch)
  if ready then
    redis.call('ZADD', K_READY, seq, seq)
  end
  return seq, ready
end

-- Leases the ready event with the lowest sequence number to replica for lease_ms, dropping
-- superseded ones on the way. Returns {'lease', seq, token, deliveries, record} or
-- {'none', ms until a retry is due, or -1}.
local function lease_next(replica, lease_ms)
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
        redis.call('HSET', K_LEASE, seq, token .. ' ' .. replica)
        redis.call('ZADD', K_EXPIRY, now + lease_ms, seq)
        return {'lease', seq, token, sch.d, redis.call('HGET', K_EV, seq)}
      end
    end
  end
end
