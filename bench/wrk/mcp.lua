-- wrk script for bench/run.sh: POST one JSON-RPC request over and over, each with its own id (a legacy
-- session must not see two requests in flight under one id: the server would cancel the first).
--
-- Inputs (environment, set by run.sh):
--   BENCH_BODY_FILE     file holding the exact request body
--   BENCH_HEADERS_FILE  file with one "Name: value" header per line
--
-- At the end it prints one machine-readable line, prefixed "WRKJSON ",
-- that run.sh/benchlib.py parse (latencies in microseconds).

local function read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local s = f:read("*a")
  f:close()
  return s
end

wrk.method = "POST"
local body = read_file(assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE unset"))
wrk.body = body
local body_pre, body_post = body:match('^(%{"jsonrpc":"2%.0","id":)1(,.*)$')
assert(body_pre, 'body must start with {"jsonrpc":"2.0","id":1,')
local headers = read_file(assert(os.getenv("BENCH_HEADERS_FILE"), "BENCH_HEADERS_FILE unset"))
for line in headers:gmatch("[^\r\n]+") do
  local k, v = line:match("^([^:]+):%s*(.-)%s*$")
  if k then wrk.headers[k] = v end
end

-- Main state: number the threads. Each thread state gets its own global `tid`.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local n = 0
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, body_pre .. string.format("%d", tid * 1000000000 + n) .. body_post)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_stdev_us":%.1f,"lat_max_us":%d,' ..
    '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
