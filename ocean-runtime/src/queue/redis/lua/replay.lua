-- ARGV: bell, dead letter id, record, capacity, supersedable, groups...
-- Queues the event again and removes its dead letter, together. Returns 'ok', 'gone' or 'full'.
if redis.call('HEXISTS', K_DEAD, ARGV[2]) == 0 then
  return 'gone'
end
local groups = {}
for i = 6, #ARGV do
  groups[#groups + 1] = ARGV[i]
end
local seq, ready = enqueue(ARGV[3], tonumber(ARGV[4]), ARGV[5], groups, now_ms())
if not seq then
  return 'full'
end
if ready then
  redis.call('PUBLISH', BELL, '1')
end
redis.call('HDEL', K_DEAD, ARGV[2])
return 'ok'
