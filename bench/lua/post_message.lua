-- POST /chatroom/{id}/message as the Pro users of $BENCH_ROOMS ("token room" per line), one
-- pair after another; $BENCH_QUERY (such as "?wait=true") is appended when set.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local pairs_, i, query

function init(args)
  pairs_ = {}
  for _, line in ipairs(read_lines(os.getenv("BENCH_ROOMS"))) do
    local token, room = line:match("^(%S+)%s+(%S+)$")
    pairs_[#pairs_ + 1] = { token = token, room = room }
  end
  i = thread_id
  query = os.getenv("BENCH_QUERY") or ""
end

function request()
  i = i + 1
  local pair = pairs_[(i % #pairs_) + 1]
  return wrk.format("POST", "/chatroom/" .. pair.room .. "/message" .. query, {
    ["Authorization"] = "Bearer " .. pair.token,
    ["Content-Type"] = "application/json",
  }, '{"content":"What is the airspeed velocity of an unladen swallow?"}')
end
