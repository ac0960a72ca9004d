-- Atopos reveal flow, one secret each (server at --pow-bits 0, so nonce 0 solves): by
-- default ONE request, the ticket step with a stamp and "reveal": true (the envelope comes
-- back at once; docs/protocol/access.md, "Stamp"); with BENCH_FLOW=challenge challenge ->
-- ticket with "reveal": true, as clients without stamps do; with BENCH_THREE_STEP=1
-- challenge -> ticket -> reveal; on the ids of slice-<thread>.txt in order.
-- Revealed ids go to revealed-<thread>.txt; `inflight` names a reveal sent but unanswered.
-- The stamp flow's bodies come from stamped-<thread>.txt, line for line with the ids, when
-- the harness made them beforehand (bench/secrets.py, prepare_stamped_requests); else they
-- are signed here as they go (BENCH_STAMPS=live).
local common = require("common")
local access = require("access")
local stamps = require("stamp")
setup, done = common.setup, common.done({ "flows", "bad", "bad_body", "pos", "exhausted", "inflight" })
flows, bad, bad_body, pos, exhausted, inflight = 0, 0, 0, 1, 0, ""
local ids, bodies, revealed, size, step, token
local one_shot = os.getenv("BENCH_THREE_STEP") ~= "1"
-- The first step of each flow: "stamp" (one request) or "challenge".
local first_step = (one_shot and os.getenv("BENCH_FLOW") ~= "challenge") and "stamp" or "challenge"
local json = { ["Content-Type"] = "application/json" }

function init(args)
  ids = common.lines("slice")
  if first_step == "stamp" then
    bodies = common.lines_if_present("stamped")
  end
  revealed = common.appender("revealed")
  size = tonumber(os.getenv("BENCH_BODY_BYTES"))
  step = first_step
end

function request()
  local id = ids[pos]
  if id == nil then -- this thread's secrets are used up: the figure would be wrong
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/healthz")
  end
  local base = "/api/v1/secrets/" .. id
  if step == "stamp" then
    local body = bodies and bodies[pos]
    if body == nil then
      local stamp = stamps.make(id, os.time())
      body = '{"stamp":"' .. stamp .. '","nonce":0,"access_proof":"'
        .. access.stamp_proof(id, stamp) .. '","reveal":true}'
    end
    inflight = id
    return wrk.format("POST", base .. "/ticket", json, body)
  elseif step == "challenge" then
    return wrk.format("POST", base .. "/challenge", nil, "")
  elseif step == "ticket" then
    local proof = access.proof(id, token)
    local body = '{"challenge":"' .. token .. '","nonce":0,"access_proof":"' .. proof .. '"'
    if one_shot then
      inflight = id
      return wrk.format("POST", base .. "/ticket", json, body .. ',"reveal":true}')
    end
    return wrk.format("POST", base .. "/ticket", json, body .. "}")
  end
  inflight = id
  return wrk.format("POST", base .. "/reveal", json, '{"ticket":"' .. token .. '"}')
end

local function next_secret()
  pos, step, inflight = pos + 1, first_step, ""
end

function response(status, headers, body)
  if exhausted == 1 then
    return
  end
  if status ~= 200 then
    bad = bad + 1
    return next_secret()
  end
  if step == "stamp" and (headers["content-type"] or headers["Content-Type"]) == "application/json" then
    -- A challenge instead of the envelope (stamp_refused): not a flow of this benchmark.
    bad = bad + 1
    return next_secret()
  end
  if step == "challenge" then
    token, step = body:match('"challenge":"([%w_-]+)"'), "ticket"
  elseif step == "ticket" and not one_shot then
    token, step = body:match('"ticket":"([%w_-]+)"'), "reveal"
  else
    flows = flows + 1
    if #body ~= size then
      bad_body = bad_body + 1
    end
    revealed:write(ids[pos], "\n")
    return next_secret()
  end
  if token == nil then
    bad = bad + 1
    next_secret()
  end
end
