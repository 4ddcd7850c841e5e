-- Shared by every scenario script: per-thread ids, reading the prepared data, and the JSON
-- report the harness parses (one line, prefixed BENCH_JSON).

local next_thread = 0

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

-- The lines of a prepared file (tokens, or "token room" pairs).
function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if #line > 0 then
      lines[#lines + 1] = line
    end
  end
  return lines
end

-- This thread's share of the numbers $BENCH_OTP_BASE .. + $BENCH_OTP_COUNT: the first
-- number's offset and the share's size.
function number_slice()
  local slice = math.floor(tonumber(os.getenv("BENCH_OTP_COUNT")) / tonumber(os.getenv("BENCH_THREADS")))
  return tonumber(os.getenv("BENCH_OTP_BASE")) + thread_id * slice, slice
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
