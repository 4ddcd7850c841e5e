-- GET $BENCH_PATH with the bearer tokens of $BENCH_TOKENS, one user after another.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local tokens, i, path

function init(args)
  tokens = read_lines(os.getenv("BENCH_TOKENS"))
  path = os.getenv("BENCH_PATH")
  i = thread_id
end

function request()
  i = i + 1
  local token = tokens[(i % #tokens) + 1]
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end
