-- ARGV: bell, dedup window (ms), capacity, then for each event of the batch, in arrival order:
-- record, event id, delivery key ('' for none), supersedable ('0'/'1'), group count, groups...
-- Returns one answer per event: {'ok', seq}, {'dup', first event id} or {'full'}. The doorbell
-- rings once for the batch, with the number of events that became ready.
local now = now_ms()
local window, capacity = tonumber(ARGV[2]), tonumber(ARGV[3])
local pruned = false
local out = {}
local woke = 0
local i = 4
while i <= #ARGV do
  local record, id, key, sup, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    tonumber(ARGV[i + 4])
  local groups = {}
  for j = 1, n do
    groups[j] = ARGV[i + 4 + j]
  end
  i = i + 5 + n
  local first = nil
  if key ~= '' then
    if not pruned then
      -- Delivery keys past the window, oldest first, a bounded number per call.
      local stale = redis.call('ZRANGEBYSCORE', K_DLVT, '-inf', '(' .. (now - window),
        'LIMIT', 0, 64)
      for _, k in ipairs(stale) do
        redis.call('HDEL', K_DLV, k)
        redis.call('ZREM', K_DLVT, k)
      end
      pruned = true
    end
    first = redis.call('HGET', K_DLV, key)
  end
  if first then
    out[#out + 1] = {'dup', first}
  else
    local seq, ready = enqueue(record, capacity, sup, groups, now)
    if not seq then
      out[#out + 1] = {'full'}
    else
      if ready then
        woke = woke + 1
      end
      if key ~= '' then
        redis.call('HSET', K_DLV, key, id)
        redis.call('ZADD', K_DLVT, now, key)
      end
      out[#out + 1] = {'ok', seq}
    end
  end
end
if woke > 0 then
  redis.call('PUBLISH', BELL, tostring(woke))
end
return out
