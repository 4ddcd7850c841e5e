-- POST /auth/send-otp for registered numbers $BENCH_OTP_BASE + n, each number once: thread t
-- walks its own slice of $BENCH_OTP_COUNT numbers (a number reused within 30 s gets 429).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local first, slice, n

function init(args)
  first, slice = number_slice()
  n = 0
end

function request()
  local number = first + (n % slice)
  n = n + 1
  return wrk.format("POST", "/auth/send-otp", { ["Content-Type"] = "application/json" },
    string.format('{"mobile_number":"+%d"}', number))
end
