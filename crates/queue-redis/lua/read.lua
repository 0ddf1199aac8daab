-- Reads jobs with their state. ARGV[1]: q; ARGV[2]: "get" with ARGV[3] an id, or a state
-- ("waiting", "delayed", "active", "completed", "failed") with ARGV[3] a limit.
-- Returns a list of {id, state, fields}.
local q, what, arg = ARGV[1], ARGV[2], ARGV[3]
if what == "get" then
  if rcall("EXISTS", q .. arg) == 0 then return {} end
  return {jobReply(q, arg)}
end
local limit = tonumber(arg)
if limit <= 0 then return {} end
local ids
if what == "waiting" then
  ids = rcall("LRANGE", q .. "wait", 0, limit - 1)
  for _, id in ipairs(rcall("LRANGE", q .. "paused", 0, limit - 1)) do ids[#ids + 1] = id end
  for _, id in ipairs(rcall("ZREVRANGE", q .. "prioritized", 0, limit - 1)) do
    ids[#ids + 1] = id
  end
elseif what == "active" then
  ids = rcall("LRANGE", q .. "active", 0, limit - 1)
else
  ids = rcall("ZREVRANGE", q .. what, 0, limit - 1)
end
local out = {}
for _, id in ipairs(ids) do
  if #out >= limit then break end
  if rcall("EXISTS", q .. id) == 1 then out[#out + 1] = jobReply(q, id, what) end
end
return out
