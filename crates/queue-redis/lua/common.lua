-- Helpers shared by every SmartWorker script, prepended to each one at build time.
--
-- Keys follow BullMQ's layout: `q` is a queue's key prefix such as "bull:signup:", a job is the
-- hash q..id, and the lists and sorted sets are q.."wait", q.."active", q.."prioritized",
-- q.."delayed", q.."completed", q.."failed", with q.."marker" waking blocked workers and
-- q.."events" the stream QueueEvents reads. Fields named "sw:*" are SmartWorker's own; BullMQ
-- ignores them.
local rcall = redis.call

local function decode(text)
  if not text then return {} end
  local ok, value = pcall(cjson.decode, text)
  if ok and type(value) == "table" then return value end
  return {}
end

-- The events stream's length limit per queue, read once per script run.
local maxEvents = {}

local function emit(q, ...)
  local max = maxEvents[q]
  if not max then
    max = tonumber(rcall("HGET", q .. "meta", "opts.maxLenEvents")) or 10000
    maxEvents[q] = max
  end
  rcall("XADD", q .. "events", "MAXLEN", "~", max, "*", ...)
end

-- Whether a queue is paused, read once per script run.
local paused = {}

local function isPaused(q)
  if paused[q] == nil then paused[q] = rcall("HEXISTS", q .. "meta", "paused") == 1 end
  return paused[q]
end

-- Makes a job runnable: the wait list (front = taken next), or prioritized by its priority.
local function enqueue(q, id, priority, front)
  if priority > 0 then
    local counter = rcall("INCR", q .. "pc")
    rcall("ZADD", q .. "prioritized", priority * 0x100000000 + counter % 0x100000000, id)
  else
    local list = q .. "wait"
    if isPaused(q) then list = q .. "paused" end
    if front then rcall("RPUSH", list, id) else rcall("LPUSH", list, id) end
  end
  if not isPaused(q) then rcall("ZADD", q .. "marker", 0, "0") end
end

-- Delays a job until runAt (ms), waking workers at the earliest due time.
local function schedule(q, id, runAt)
  rcall("ZADD", q .. "delayed", runAt * 0x1000, id)
  rcall("HSET", q .. id, "sw:runAt", runAt)
  local first = rcall("ZRANGE", q .. "delayed", 0, 0, "WITHSCORES")
  if first[2] then
    rcall("ZADD", q .. "marker", math.floor(tonumber(first[2]) / 0x1000), "1")
  end
end

-- Moves delayed jobs whose time has come to where workers take them.
local function promoteDue(q, now)
  local due = rcall("ZRANGEBYSCORE", q .. "delayed", 0, (now + 1) * 0x1000 - 1, "LIMIT", 0, 1000)
  for _, id in ipairs(due) do
    rcall("ZREM", q .. "delayed", id)
    local priority = tonumber(rcall("HGET", q .. id, "priority")) or 0
    rcall("HSET", q .. id, "delay", 0)
    enqueue(q, id, priority, false)
    emit(q, "event", "waiting", "jobId", id, "prev", "delayed")
  end
end

-- Appends an already encoded JSON value to a hash field holding a JSON array.
local function appendJson(key, field, item)
  local list = rcall("HGET", key, field)
  if (not list) or list == "" or list == "[]" then
    list = "[" .. item .. "]"
  else
    list = string.sub(list, 1, -2) .. "," .. item .. "]"
  end
  rcall("HSET", key, field, list)
end

-- Stores one job as BullMQ's add scripts do; returns its id (the existing one for a taken
-- custom id). `job` holds name, data and opts (JSON text), customId, delay and priority.
local function addJob(q, job, now)
  local id = job.customId
  if type(id) == "string" and id ~= "" then
    if rcall("EXISTS", q .. id) == 1 then
      emit(q, "event", "duplicated", "jobId", id)
      return id
    end
  else
    id = tostring(rcall("INCR", q .. "id"))
  end
  local delay = tonumber(job.delay) or 0
  local priority = tonumber(job.priority) or 0
  rcall("HSET", q .. id, "name", job.name, "data", job.data, "opts", job.opts,
    "timestamp", now, "delay", delay, "priority", priority, "atm", 0)
  rcall("HSETNX", q .. "meta", "opts.maxLenEvents", 10000)
  emit(q, "event", "added", "jobId", id, "name", job.name)
  if delay > 0 then
    schedule(q, id, now + delay)
    emit(q, "event", "delayed", "jobId", id, "delay", now + delay)
  else
    rcall("HSET", q .. id, "sw:runAt", now)
    enqueue(q, id, priority, false)
    emit(q, "event", "waiting", "jobId", id)
  end
  return id
end

local function removeJobKeys(key)
  rcall("DEL", key, key .. ":logs", key .. ":lock")
end

-- BullMQ's removeOnComplete/removeOnFail forms: true, a count, or {count, age (seconds)}.
local function keepOf(value)
  if value == true then return 0, nil end
  if type(value) == "number" then return value, nil end
  if type(value) == "table" then return tonumber(value.count), tonumber(value.age) end
  return nil, nil
end

local function retain(q, set, count, age, now)
  local setKey = q .. set
  if age then
    local old = rcall("ZRANGEBYSCORE", setKey, 0, now - age * 1000, "LIMIT", 0, 1000)
    for _, id in ipairs(old) do
      rcall("ZREM", setKey, id)
      removeJobKeys(q .. id)
    end
  end
  if count then
    local extra = rcall("ZREVRANGE", setKey, count, count + 999)
    for _, id in ipairs(extra) do
      rcall("ZREM", setKey, id)
      removeJobKeys(q .. id)
    end
  end
end

-- True when the lock is held with `token`; an expired lock still counts while the job is
-- active and nobody else took it (the token is kept on the job too).
local function holdsLock(key, token)
  local lock = rcall("GET", key .. ":lock")
  if lock then return lock == token end
  return rcall("HGET", key, "sw:token") == token
end

-- A job asks for healing with the autofix option or "reasoning_fix": true in its data; the
-- same rule as smartworker_core::autofix_requested.
local function asksForHealing(data, opts)
  if decode(opts).autofix == true then return true end
  return decode(data).reasoning_fix == true
end

-- Ends a job that used its attempts: failed in its queue as BullMQ leaves it, a copy waiting
-- in the dead-letter queue, and the heal job when asked for. `d` carries the dead-letter
-- queue prefix (dlq), the heal queue prefix (healQ) and the heal job template (healName,
-- healData with the placeholder "__SW_JOB_ID__", healOpts). Returns the heal job id or false.
local function deadLetter(q, id, qid, d, reason, now)
  local key = q .. id
  local atm = rcall("HGET", key, "atm")
  rcall("HSET", key, "failedReason", reason, "finishedOn", now)
  rcall("ZADD", q .. "failed", now, id)
  emit(q, "event", "failed", "jobId", id, "failedReason", reason, "prev", "active")
  emit(q, "event", "retries-exhausted", "jobId", id, "attemptsMade", atm)
  local f = rcall("HMGET", key, "name", "data", "opts", "stacktrace", "sw:attempts")
  if type(d.dlq) == "string" and d.dlq ~= "" then
    local copy = tostring(rcall("INCR", d.dlq .. "id"))
    rcall("HSET", d.dlq .. copy, "name", f[1] or "", "data", f[2] or "null",
      "opts", "{\"attempts\":1}", "timestamp", now, "delay", 0, "priority", 0,
      "failedReason", reason, "stacktrace", f[4] or "[]", "sw:attempts", f[5] or "[]",
      "sw:origin", qid, "sw:runAt", now)
    rcall("HSETNX", d.dlq .. "meta", "opts.maxLenEvents", 10000)
    enqueue(d.dlq, copy, 0, false)
    emit(d.dlq, "event", "added", "jobId", copy, "name", f[1] or "")
    emit(d.dlq, "event", "waiting", "jobId", copy)
    rcall("HSET", key, "sw:dlq", d.dlq, "sw:dlqId", copy)
  end
  local heal = false
  if type(d.healQ) == "string" and d.healQ ~= "" and asksForHealing(f[2], f[3]) then
    local data = string.gsub(d.healData, "\"__SW_JOB_ID__\"", (string.gsub(cjson.encode(qid), "%%", "%%%%")))
    heal = addJob(d.healQ, {name = d.healName, data = data, opts = d.healOpts}, now)
  end
  local count, age = keepOf(decode(f[3]).removeOnFail)
  retain(q, "failed", count, age, now)
  return heal
end

-- The BullMQ state of a job, by where its id is found.
local function stateOf(q, id)
  if rcall("ZSCORE", q .. "completed", id) then return "completed" end
  if rcall("ZSCORE", q .. "failed", id) then return "failed" end
  if rcall("ZSCORE", q .. "delayed", id) then return "delayed" end
  if rcall("ZSCORE", q .. "prioritized", id) then return "prioritized" end
  if rcall("LPOS", q .. "active", id) then return "active" end
  if rcall("LPOS", q .. "wait", id) then return "waiting" end
  if rcall("LPOS", q .. "paused", id) then return "paused" end
  return "unknown"
end

-- A job as scripts return it: id, state and its hash fields.
local function jobReply(q, id, state)
  return {id, state or stateOf(q, id), rcall("HGETALL", q .. id)}
end
