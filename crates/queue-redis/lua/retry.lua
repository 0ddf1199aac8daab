-- Moves a failed (dead-lettered) job back to its queue with fresh attempts, keeping its
-- history, and removes its copy from the dead-letter queue.
-- ARGV: q, id, now. Returns {"ok"} | {"missing"} | {"state", state}.
local q, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = q .. id
if rcall("EXISTS", key) == 0 then return {"missing"} end
if not rcall("ZSCORE", q .. "failed", id) then return {"state", stateOf(q, id)} end
rcall("ZREM", q .. "failed", id)
local f = rcall("HMGET", key, "sw:dlq", "sw:dlqId", "priority")
if f[1] and f[2] then
  local dlq, copy = f[1], f[2]
  for _, list in ipairs({"wait", "paused", "active"}) do rcall("LREM", dlq .. list, 0, copy) end
  for _, set in ipairs({"prioritized", "delayed", "completed", "failed"}) do
    rcall("ZREM", dlq .. set, copy)
  end
  removeJobKeys(dlq .. copy)
  emit(dlq, "event", "removed", "jobId", copy, "prev", "waiting")
end
rcall("HSET", key, "atm", 0, "stc", 0, "sw:runAt", now)
rcall("HDEL", key, "failedReason", "finishedOn", "processedOn", "sw:dlq", "sw:dlqId")
enqueue(q, id, tonumber(f[3]) or 0, false)
emit(q, "event", "waiting", "jobId", id, "prev", "failed")
return {"ok"}
