-- wrk script: authorization-code exchange. Each request redeems a fresh code from a
-- file of "code verifier" lines. Args: client_id, redirect_uri, codes file, threads.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local pairs_ = {}
local client_id, redirect_uri

function init(args)
  client_id, redirect_uri = args[1], args[2]
  local n = 0
  for line in io.lines(args[3]) do
    if n % tonumber(args[4]) == id then table.insert(pairs_, line) end
    n = n + 1
  end
end

function request()
  local line = table.remove(pairs_)
  if line == nil then error("out of codes: issue more") end
  local code, verifier = string.match(line, "(%S+) (%S+)")
  local body = "grant_type=authorization_code&client_id=" .. client_id
    .. "&redirect_uri=" .. redirect_uri .. "&code=" .. code .. "&code_verifier=" .. verifier
  return wrk.format("POST", "/oauth/token",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function done(summary, latency, requests)
  for _, p in pairs({50, 90, 99}) do
    io.write(string.format("p%d_ms %.2f\n", p, latency:percentile(p) / 1000))
  end
end
