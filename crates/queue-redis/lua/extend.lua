-- Extends the locks a worker holds. ARGV[1]: JSON array of {q, id, token}; ARGV[2]: worker;
-- ARGV[3]: lock ms. Returns the 1-based indexes of the jobs whose lock was lost.
local reqs = cjson.decode(ARGV[1])
local worker, lockMs = ARGV[2], ARGV[3]
local lost = {}
for i, r in ipairs(reqs) do
  local key = r.q .. r.id
  local lock = rcall("GET", key .. ":lock")
  local held = lock == r.token
  if not lock then
    held = rcall("HGET", key, "sw:token") == r.token and rcall("LPOS", r.q .. "active", r.id)
  end
  if held and rcall("HGET", key, "pb") == worker then
    rcall("SET", key .. ":lock", r.token, "PX", lockMs)
    rcall("SREM", r.q .. "stalled", r.id)
  else
    lost[#lost + 1] = i
  end
end
return lost
