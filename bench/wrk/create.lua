-- Atopos create: POST the envelope in $BENCH_BODY; each new id goes to ids-<thread>.txt.
local common = require("common")
setup, done = common.setup, common.done({ "ok", "bad" })
ok, bad = 0, 0
local ids

function init(args)
  local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
  wrk.method = "POST"
  -- Any valid access key will do for storing (docs/protocol/access.md); this one is the
  -- key of an all-zero link key, so these secrets can be revealed only by a proof with it.
  wrk.path = "/api/v1/secrets?views=1&expires_in=3600&access_key=VD4Lzi0dRGf98rqFntm0zRfNiiaegCZwd9XBBBn6Oq0"
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.body = f:read("*a")
  f:close()
  ids = common.appender("ids")
end

function response(status, headers, body)
  local id = status == 201 and body:match('"id":"([%w_-]+)"')
  if id then
    ok = ok + 1
    ids:write(id, "\n")
  else
    bad = bad + 1
  end
end
