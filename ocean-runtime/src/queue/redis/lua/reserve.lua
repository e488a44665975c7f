-- ARGV: bell, replica, lease (ms).
-- Returns what lease_next answers.
return lease_next(ARGV[2], tonumber(ARGV[3]))
