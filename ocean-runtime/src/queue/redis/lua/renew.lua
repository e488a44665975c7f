-- ARGV: bell, lease (ms), then seq and token pairs.
-- Extends every lease still held with its token; returns the seqs whose token is stale.
local deadline = now_ms() + tonumber(ARGV[2])
local fenced = {}
for i = 3, #ARGV, 2 do
  if holds(tonumber(ARGV[i]), ARGV[i + 1]) then
    redis.call('ZADD', K_EXPIRY, deadline, ARGV[i])
  else
    fenced[#fenced + 1] = ARGV[i]
  end
end
return fenced
