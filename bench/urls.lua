-- wrk script: cycle over a list of request paths, one per line.
--
--   wrk -t T -c C -d 20s -s bench/urls.lua http://127.0.0.1:PORT -- LIST T
--
-- Each of the T threads starts at its own offset (thread k at k/T of the list), so the
-- connections do not march over the same URLs together. done() prints one JSON line starting
-- with {"wrk": requests, bytes, errors by kind (wrk's connect/read/write/timeout, status >= 400,
-- and non-2xx counted here, by class), latency p50/p90/p99/mean/max in milliseconds.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local function load_paths(file)
   local paths = {}
   for line in io.lines(file) do
      line = line:gsub("%s+$", "")
      if line ~= "" and line:sub(1, 1) ~= "#" then
         table.insert(paths, line)
      end
   end
   return paths
end

local formatted, pos

function init(args)
   local paths = load_paths(args[1])
   local nthreads = tonumber(args[2]) or 1
   n = #paths
   if n == 0 then
      error("no request paths in " .. tostring(args[1]))
   end
   formatted = {}
   for k, path in ipairs(paths) do
      formatted[k] = wrk.format("GET", path)
   end
   local k = (id or 0) % nthreads
   pos = math.floor(n * k / nthreads)
   received, non2xx, s1xx, s3xx, s4xx, s5xx = 0, 0, 0, 0, 0, 0
end

function request()
   local r = formatted[pos + 1]
   pos = (pos + 1) % n
   return r
end

function response(status, headers, body)
   received = received + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if status < 200 then
         s1xx = s1xx + 1
      elseif status < 400 then
         s3xx = s3xx + 1
      elseif status < 500 then
         s4xx = s4xx + 1
      else
         s5xx = s5xx + 1
      end
   end
end

local function sum(name)
   local total = 0
   for _, thread in ipairs(threads) do
      total = total + (tonumber(thread:get(name)) or 0)
   end
   return total
end

local function ms(us)
   if us == nil or us ~= us or us == math.huge or us == -math.huge then
      return "null" -- no sample (a run with no reply)
   end
   return string.format("%.3f", us / 1000)
end

function done(summary, latency, requests)
   local e = summary.errors
   local parts = {
      string.format('"requests": %d', summary.requests),
      string.format('"duration_s": %.3f', summary.duration / 1e6),
      string.format('"bytes": %d', summary.bytes),
      string.format('"urls": %d', tonumber(threads[1] and threads[1]:get("n")) or 0),
      string.format('"threads": %d', #threads),
      string.format(
         '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d, '
            .. '"non2xx": %d, "1xx": %d, "3xx": %d, "4xx": %d, "5xx": %d}',
         e.connect, e.read, e.write, e.timeout, e.status,
         sum("non2xx"), sum("s1xx"), sum("s3xx"), sum("s4xx"), sum("s5xx")
      ),
      string.format(
         '"latency_ms": {"p50": %s, "p90": %s, "p99": %s, "mean": %s, "max": %s}',
         ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
         ms(latency.mean), ms(latency.max)
      ),
   }
   io.write('{"wrk": 1, ' .. table.concat(parts, ", ") .. "}\n")
end
