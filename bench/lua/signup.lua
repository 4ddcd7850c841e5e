-- Preparation: POST /auth/signup for $BENCH_OTP_COUNT numbers from $BENCH_OTP_BASE, each once,
-- split between threads; once a thread's slice is done it asks /health (wrk stops on time).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local first, slice, n

function init(args)
  first, slice = number_slice()
  n = 0
end

function request()
  if n >= slice then
    return wrk.format("GET", "/health")
  end
  local number = first + n
  n = n + 1
  return wrk.format("POST", "/auth/signup", { ["Content-Type"] = "application/json" },
    string.format('{"mobile_number":"+%d"}', number))
end
