-- Moves up to `max` runnable jobs of one queue to active, each under its own lock: the wait
-- list first (oldest first), then prioritized (lowest number first), as BullMQ takes them.
-- ARGV: q, now, max, token prefix, lock ms, worker. Returns {id, token, fields} per job.
-- FIXME: BullMQ's rate limiter and global concurrency (meta "max", "concurrency") are not
-- honoured here; a queue that sets them is limited only by each worker's concurrency.
local q, now, max, token, lockMs, worker =
  ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
promoteDue(q, now)
if isPaused(q) then return {} end
local out = {}
local tries = 0
while #out < max and tries < max * 2 do
  tries = tries + 1
  local id = rcall("RPOPLPUSH", q .. "wait", q .. "active")
  if not id then
    local popped = rcall("ZPOPMIN", q .. "prioritized")
    if #popped == 0 then break end
    id = popped[1]
    rcall("LPUSH", q .. "active", id)
  end
  local key = q .. id
  if rcall("EXISTS", key) == 0 then
    -- An id whose job was removed under it: drop it instead of running nothing.
    rcall("LREM", q .. "active", 1, id)
  else
    local t = token .. ":" .. (#out + 1)
    rcall("SET", key .. ":lock", t, "PX", lockMs)
    rcall("HINCRBY", key, "ats", 1)
    rcall("HSET", key, "processedOn", now, "pb", worker, "sw:token", t)
    emit(q, "event", "active", "jobId", id, "prev", "waiting")
    out[#out + 1] = {id, t, rcall("HGETALL", key)}
  end
end
if rcall("LLEN", q .. "wait") > 0 or rcall("ZCARD", q .. "prioritized") > 0 then
  rcall("ZADD", q .. "marker", 0, "0")
end
return out
