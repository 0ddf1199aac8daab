-- Adds jobs, possibly to several queues, in one atomic step.
-- ARGV[1]: JSON array of {q, name, data, opts, customId, delay, priority}; ARGV[2]: now (ms).
-- Returns the ids, in order.
local jobs = cjson.decode(ARGV[1])
local now = tonumber(ARGV[2])
local ids = {}
for i, job in ipairs(jobs) do
  ids[i] = addJob(job.q, job, now)
end
return ids
