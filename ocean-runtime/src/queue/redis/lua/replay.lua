-- ARGV: bell, dead letter id, record, capacity, supersedable, groups...
-- Queues the event again and removes its dead letter, together. Returns 'ok', 'gone' or 'full'.
if redis.call('HEXISTS', K_DEAD, ARGV[2]) == 0 then
  return 'gone'
end
local groups = {}
for i = 6, #ARGV do
  groups[#groups + 1] = ARGV[i]
end
if not enqueue(ARGV[3], tonumber(ARGV[4]), ARGV[5], groups, now_ms()) then
  return 'full'
end
redis.call('HDEL', K_DEAD, ARGV[2])
return 'ok'
