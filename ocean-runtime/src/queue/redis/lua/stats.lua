-- ARGV: bell.
-- Returns {depth, age of the oldest event in ms (-1 when empty), superseded, takeovers, given up}.
local depth = redis.call('ZCARD', K_ALL)
local oldest = redis.call('ZRANGE', K_ALL, 0, 0, 'WITHSCORES')
local age = -1
if #oldest > 0 then
  age = math.max(now_ms() - tonumber(oldest[2]), 0)
end
local st = redis.call('HMGET', K_STATS, 'superseded', 'takeovers', 'given_up')
return {depth, age, tonumber(st[1] or 0), tonumber(st[2] or 0), tonumber(st[3] or 0)}
