-- Removes a job that is not active. ARGV: q, id. Returns "ok", "missing" or "active".
local q, id = ARGV[1], ARGV[2]
local key = q .. id
if rcall("EXISTS", key) == 0 then return "missing" end
if rcall("LPOS", q .. "active", id) then return "active" end
local prev = stateOf(q, id)
for _, list in ipairs({"wait", "paused"}) do rcall("LREM", q .. list, 0, id) end
for _, set in ipairs({"prioritized", "delayed", "completed", "failed"}) do
  rcall("ZREM", q .. set, id)
end
removeJobKeys(key)
emit(q, "event", "removed", "jobId", id, "prev", prev)
return "ok"
