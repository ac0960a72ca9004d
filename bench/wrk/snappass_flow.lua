-- snappass read flow, as its browser does: GET /<key> (the "reveal secret" preview page,
-- consumes nothing) -> POST /<key> (empty form; the page with the secret, which is deleted).
-- Same counters and files as flow.lua; a reveal page without the secret counts in bad_body.
local common = require("common")
setup, done = common.setup, common.done({ "flows", "bad", "bad_body", "pos", "exhausted", "inflight" })
flows, bad, bad_body, pos, exhausted, inflight = 0, 0, 0, 1, 0, ""
local ids, revealed, step
local page = { ["Accept"] = "text/html" }
local form = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Accept"] = "text/html" }

function init(args)
  ids = common.lines("slice")
  revealed = common.appender("revealed")
  step = "preview"
end

function request()
  local key = ids[pos]
  if key == nil then -- this thread's secrets are used up: the figure would be wrong
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/")
  end
  if step == "preview" then
    return wrk.format("GET", "/" .. key, page)
  end
  inflight = key
  return wrk.format("POST", "/" .. key, form, "")
end

local function next_secret()
  pos, step, inflight = pos + 1, "preview", ""
end

function response(status, headers, body)
  if exhausted == 1 then
    return
  end
  if status ~= 200 then
    bad = bad + 1
    return next_secret()
  end
  if step == "preview" then
    step = "reveal"
    return
  end
  flows = flows + 1
  if not body:find("correct horse battery staple", 1, true) then
    bad_body = bad_body + 1
  end
  revealed:write(ids[pos], "\n")
  next_secret()
end
