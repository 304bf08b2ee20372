-- wrk script: POST each line of a file once, then stop. Used for refresh-token reuse
-- (and to rotate tokens once before it) and for code exchange. Each thread takes every
-- THREADS-th line. A body is built from a template in which {1} and {2} are the line's
-- first and second words. Responses with the expected status are counted, and, when an
-- output file is given, the JSON response's refresh_token is appended to it (one file
-- per thread: OUT.<thread id>). Once a thread's lines are out it stops; the few requests
-- in flight then go to GET /healthz and are not counted.
-- wrk's own duration is the whole -d however early the lines run out, so each thread
-- notes the time it started and the time its lines ran out (the answers still in
-- flight then come within one latency of it), and the rate is read over the span from
-- the first start to the last thread's end.
-- Args: path, body template, lines file, threads, expected status, [out file]
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local lines = {}
local path, template, expected, out
counted = 0
started_us, finished_us = 0, 0

local function now_us()
  local clock = io.popen("date +%s%6N")
  local us = tonumber(clock:read("*l"))
  clock:close()
  return us
end

function init(args)
  path, template, expected = args[1], args[2], tonumber(args[5])
  local n = 0
  for line in io.lines(args[3]) do
    if n % tonumber(args[4]) == id then table.insert(lines, line) end
    n = n + 1
  end
  if args[6] then out = io.open(args[6] .. "." .. id, "w") end
  started_us = now_us()
end

function request()
  local line = table.remove(lines)
  if line == nil then
    if finished_us == 0 then finished_us = now_us() end
    wrk.thread:stop()
    return wrk.format("GET", "/healthz")
  end
  local a, b = string.match(line, "(%S+)%s*(%S*)")
  local body = string.gsub(string.gsub(template, "{1}", a), "{2}", b)
  return wrk.format("POST", path,
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function response(status, headers, body)
  if status == expected then
    counted = counted + 1
    if out then
      local token = string.match(body, '"refresh_token":"([^"]+)"')
      if token then out:write(token .. "\n") out:flush() end
    end
  end
end

function done(summary, latency, requests)
  local total, first, last = 0, nil, 0
  for _, t in ipairs(threads) do
    total = total + t:get("counted")
    local started, finished = t:get("started_us"), t:get("finished_us")
    if first == nil or started < first then first = started end
    if finished == 0 then last = nil elseif last ~= nil and finished > last then last = finished end
  end
  local duration = summary.duration
  if last ~= nil and first ~= nil and last > first then duration = last - first end
  io.write(string.format("counted %d\nduration_us %d\n", total, duration))
  for _, p in pairs({50, 90, 99}) do
    io.write(string.format("p%d_ms %.2f\n", p, latency:percentile(p) / 1000))
  end
end
