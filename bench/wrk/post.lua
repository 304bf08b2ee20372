-- wrk script: POST a form body built from a template with {1} replaced by each line of
-- a file in turn (e.g. introspection of many tokens), with optional headers.
-- Args: path, body template, lines file, threads, [header...]
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local lines = {}
local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
local path, template
local i = 0

function init(args)
  path, template = args[1], args[2]
  local n = 0
  for line in io.lines(args[3]) do
    if n % tonumber(args[4]) == id then table.insert(lines, line) end
    n = n + 1
  end
  for k = 5, #args do
    local name, value = string.match(args[k], "([^:]+):%s*(.*)")
    headers[name] = value
  end
end

function request()
  i = i % #lines + 1
  local body = string.gsub(template, "{1}", lines[i])
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  for _, p in pairs({50, 90, 99}) do
    io.write(string.format("p%d_ms %.2f\n", p, latency:percentile(p) / 1000))
  end
end
