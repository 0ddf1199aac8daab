-- Counts a queue's jobs: waiting (wait, paused, prioritized), delayed, active, completed,
-- failed. ARGV[1]: q.
local q = ARGV[1]
return {
  rcall("LLEN", q .. "wait") + rcall("LLEN", q .. "paused") + rcall("ZCARD", q .. "prioritized"),
  rcall("ZCARD", q .. "delayed"),
  rcall("LLEN", q .. "active"),
  rcall("ZCARD", q .. "completed"),
  rcall("ZCARD", q .. "failed"),
}
