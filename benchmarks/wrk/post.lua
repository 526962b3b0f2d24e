-- wrk script for the serving benchmark: POSTs the bodies of a file (one JSON body a line) in
-- turn, each connection starting at its own offset; prints one JSON line of results at the end.
-- Usage: wrk -s post.lua <url> -- <bodies file> <path>
local bodies = {}
local path = "/"
local counter = 0
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   path = args[2]
   for line in io.lines(args[1]) do
      table.insert(bodies, line)
   end
   counter = math.random(#bodies)
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter % #bodies + 1
   return wrk.format("POST", path, nil, bodies[counter])
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
      '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
