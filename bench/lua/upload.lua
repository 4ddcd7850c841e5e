-- POST /uploads with the multipart body in $BENCH_BODY (a 1 MiB image), as the users of
-- $BENCH_TOKENS in turn.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local tokens, i, body

function init(args)
  tokens = read_lines(os.getenv("BENCH_TOKENS"))
  local file = io.open(os.getenv("BENCH_BODY"), "rb")
  body = file:read("*a")
  file:close()
  i = thread_id
end

function request()
  i = i + 1
  local token = tokens[(i % #tokens) + 1]
  return wrk.format("POST", "/uploads", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "multipart/form-data; boundary=bench-boundary",
  }, body)
end
