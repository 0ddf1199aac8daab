-- Hands an active job back to the front of its queue without counting the attempt.
-- ARGV: q, id, token, reason, now. Returns 1 when released, 0 when the lock was not held.
local q, id, token, reason, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local key = q .. id
if rcall("EXISTS", key) == 0 or not holdsLock(key, token) then return 0 end
if rcall("LREM", q .. "active", -1, id) == 0 then return 0 end
rcall("DEL", key .. ":lock")
rcall("SREM", q .. "stalled", id)
rcall("HDEL", key, "sw:token")
local f = rcall("HMGET", key, "atm", "pb", "priority")
appendJson(key, "sw:attempts", cjson.encode({number = (tonumber(f[1]) or 0) + 1,
  worker = f[2] or "", started_at = now, finished_at = now, error = reason}))
rcall("HSET", key, "sw:runAt", now)
enqueue(q, id, tonumber(f[3]) or 0, true)
emit(q, "event", "waiting", "jobId", id, "prev", "active")
return 1
