-- Puts active jobs whose lock expired back to the front of their queue, or, once a job
-- stalled more than `maxStalled` times, dead-letters it as BullMQ does.
-- ARGV[1]: q; ARGV[2]: queue name; ARGV[3]: now; ARGV[4]: maxStalled; ARGV[5]: JSON of the
-- dead-letter settings {dlq, healQ, healName, healData, healOpts}. Returns the recovered ids.
local q, name, now, maxStalled = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local d = cjson.decode(ARGV[5])
local recovered = {}
for _, id in ipairs(rcall("LRANGE", q .. "active", 0, -1)) do
  local key = q .. id
  if rcall("EXISTS", key .. ":lock") == 0 then
    rcall("LREM", q .. "active", 1, id)
    rcall("SREM", q .. "stalled", id)
    if rcall("EXISTS", key) == 1 then
      local f = rcall("HMGET", key, "atm", "pb", "processedOn", "priority")
      rcall("HDEL", key, "sw:token")
      appendJson(key, "sw:attempts", cjson.encode({number = (tonumber(f[1]) or 0) + 1,
        worker = f[2] or "", started_at = tonumber(f[3]) or now, finished_at = now,
        error = "worker stopped renewing the job's lock (stalled); job requeued"}))
      local stalledCount = rcall("HINCRBY", key, "stc", 1)
      emit(q, "event", "stalled", "jobId", id)
      if stalledCount > maxStalled then
        deadLetter(q, id, name .. ":" .. id, d, "job stalled more than allowable limit", now)
      else
        enqueue(q, id, tonumber(f[4]) or 0, true)
        emit(q, "event", "waiting", "jobId", id, "prev", "active")
      end
      recovered[#recovered + 1] = id
    end
  end
end
return recovered
