-- ARGV: bell, record, event id, delivery key ('' for none), dedup window (ms), capacity,
-- supersedable ('0'/'1'), groups...
-- Returns {'ok', seq}, {'dup', first event id} or {'full'}.
local now = now_ms()
local key = ARGV[4]
if key ~= '' then
  local stale = redis.call('ZRANGEBYSCORE', K_DLVT, '-inf', '(' .. (now - tonumber(ARGV[5])),
    'LIMIT', 0, 64)
  for _, k in ipairs(stale) do
    redis.call('HDEL', K_DLV, k)
    redis.call('ZREM', K_DLVT, k)
  end
  local first = redis.call('HGET', K_DLV, key)
  if first then
    return {'dup', first}
  end
end
local groups = {}
for i = 8, #ARGV do
  groups[#groups + 1] = ARGV[i]
end
local seq = enqueue(ARGV[2], tonumber(ARGV[6]), ARGV[7], groups, now)
if not seq then
  return {'full'}
end
if key ~= '' then
  redis.call('HSET', K_DLV, key, ARGV[3])
  redis.call('ZADD', K_DLVT, now, key)
end
return {'ok', seq}
