-- wrk script: GET <path>, rotating over pre-created session cookies.
-- Usage: wrk ... -s rotate.lua <url> -- <path> <cookie-file|->
-- Each line of the cookie file is a `name=value` pair from a Set-Cookie.
-- Requests are formatted once in init(), so the per-request Lua cost is an
-- index increment. With "-" no cookie is sent (the /new workload).
local requests = {}
local n = 0
local i = 0

function init(args)
  local path, file = args[1], args[2]
  if file ~= "-" then
    for line in io.lines(file) do
      if #line > 0 then
        n = n + 1
        requests[n] = wrk.format("GET", path, { ["Cookie"] = line })
      end
    end
  end
  if n == 0 then
    n = 1
    requests[1] = wrk.format("GET", path)
  end
  -- Threads start at different places in the list.
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, requests)
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d connect_errors=%d read_errors=%d write_errors=%d status_errors=%d timeouts=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
