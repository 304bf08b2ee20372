-- wrk script: GET, cycling through the paths of a file (one a line), with optional
-- headers ("Name: value" arguments). Args: paths file, threads, [header...]
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local paths = {}
local headers = {}
local i = 0

function init(args)
  local n = 0
  for line in io.lines(args[1]) do
    if n % tonumber(args[2]) == id then table.insert(paths, line) end
    n = n + 1
  end
  if #paths == 0 then for line in io.lines(args[1]) do table.insert(paths, line) end end
  for k = 3, #args do
    local name, value = string.match(args[k], "([^:]+):%s*(.*)")
    headers[name] = value
  end
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end

function done(summary, latency, requests)
  for _, p in pairs({50, 90, 99}) do
    io.write(string.format("p%d_ms %.2f\n", p, latency:percentile(p) / 1000))
  end
end
