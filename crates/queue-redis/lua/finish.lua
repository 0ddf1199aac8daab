-- Records finished attempts, each one as BullMQ's moveToFinished / moveToDelayed / retryJob
-- would, plus SmartWorker's attempt history.
-- ARGV[1]: JSON array of {q, name, id, qid, token, ok, value, reason, stack, attempt, dlq,
-- healQ, healName, healData, healOpts}; ARGV[2]: now (ms).
-- Returns per request {"completed"} | {"retry", runAt} | {"dead", healId|false} | {"lost"}.
-- FIXME: a child job of a BullMQ flow (one with a parent) completes here without updating its
-- parent's dependencies, so the parent never runs; flows need Node workers until this lands.
local reqs = cjson.decode(ARGV[1])
local now = tonumber(ARGV[2])

local function backoffDelay(backoff, attemptsMade)
  if type(backoff) == "number" then return backoff end
  if type(backoff) ~= "table" then return 0 end
  local delay = tonumber(backoff.delay) or 0
  if backoff.type == "exponential" then
    return math.floor(delay * 2 ^ math.min(attemptsMade - 1, 32))
  end
  if backoff.type == "fixed" then return delay end
  return 0
end

local function complete(q, id, value)
  local key = q .. id
  rcall("HSET", key, "returnvalue", value, "finishedOn", now)
  rcall("ZADD", q .. "completed", now, id)
  emit(q, "event", "completed", "jobId", id, "returnvalue", value, "prev", "active")
  -- Most jobs keep their results; skip decoding options that set no retention.
  local opts = rcall("HGET", key, "opts")
  if opts and string.find(opts, "removeOnComplete", 1, true) then
    local count, age = keepOf(decode(opts).removeOnComplete)
    retain(q, "completed", count, age, now)
  end
  return {"completed"}
end

local function fail(r, atm)
  local q, id = r.q, r.id
  local key = q .. id
  rcall("HSET", key, "failedReason", r.reason)
  appendJson(key, "stacktrace", r.stack)
  local opts = decode(rcall("HGET", key, "opts"))
  local attempts = tonumber(opts.attempts) or 1
  if atm >= attempts then
    return {"dead", deadLetter(q, id, r.qid, r, r.reason, now)}
  end
  local wait = backoffDelay(opts.backoff, atm)
  if wait > 0 then
    schedule(q, id, now + wait)
    rcall("HSET", key, "delay", wait)
    emit(q, "event", "delayed", "jobId", id, "delay", now + wait)
    return {"retry", now + wait}
  end
  rcall("HSET", key, "sw:runAt", now)
  enqueue(q, id, tonumber(rcall("HGET", key, "priority")) or 0, false)
  emit(q, "event", "waiting", "jobId", id, "prev", "failed")
  return {"retry", now}
end

local function finishOne(r)
  local key = r.q .. r.id
  if rcall("EXISTS", key) == 0 or not holdsLock(key, r.token) then return {"lost"} end
  if rcall("LREM", r.q .. "active", -1, r.id) == 0 then return {"lost"} end
  rcall("DEL", key .. ":lock")
  rcall("SREM", r.q .. "stalled", r.id)
  rcall("HDEL", key, "sw:token")
  appendJson(key, "sw:attempts", r.attempt)
  local atm = rcall("HINCRBY", key, "atm", 1)
  if r.ok then return complete(r.q, r.id, r.value) end
  return fail(r, atm)
end

local out = {}
for i, r in ipairs(reqs) do
  out[i] = finishOne(r)
end
return out
