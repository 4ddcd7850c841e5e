-- Preparation: POST /auth/signup for $BENCH_OTP_COUNT numbers from $BENCH_OTP_BASE, each once,
-- split between threads; once a thread's slice is done it asks /health (wrk stops on time).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local base, slice, first, n

function init(args)
  base = tonumber(os.getenv("BENCH_OTP_BASE"))
  slice = math.floor(tonumber(os.getenv("BENCH_OTP_COUNT")) / tonumber(os.getenv("BENCH_THREADS")))
  first = thread_id * slice
  n = 0
end

function request()
  if n >= slice then
    return wrk.format("GET", "/health")
  end
  local number = base + first + n
  n = n + 1
  return wrk.format("POST", "/auth/signup", { ["Content-Type"] = "application/json" },
    string.format('{"mobile_number":"+%d"}', number))
end
