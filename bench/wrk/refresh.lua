-- wrk script: refresh-token rotation. Each thread owns a pool of refresh tokens (one
-- per family); a request takes one, its response puts the rotated one back, so no
-- token is ever presented twice. Args: client_id, tokens file (one token a line),
-- threads, [path: /oauth/token unless given, e.g. /token for the peer].
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local pool = {}
local client_id
local path = "/oauth/token"

function init(args)
  client_id = args[1]
  if args[4] then path = args[4] end
  local n = 0
  for line in io.lines(args[2]) do
    if n % tonumber(args[3]) == id then table.insert(pool, line) end
    n = n + 1
  end
end

function request()
  local token = table.remove(pool)
  if token == nil then
    error("token pool empty: give each thread more families than connections")
  end
  local body = "grant_type=refresh_token&client_id=" .. client_id .. "&refresh_token=" .. token
  return wrk.format("POST", path,
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function response(status, headers, body)
  -- A refused refresh loses its family's chain; wrk counts it under Non-2xx.
  if status == 200 then
    table.insert(pool, string.match(body, '"refresh_token":"([^"]+)"'))
  end
end

function done(summary, latency, requests)
  for _, p in pairs({50, 90, 99}) do
    io.write(string.format("p%d_ms %.2f\n", p, latency:percentile(p) / 1000))
  end
end
