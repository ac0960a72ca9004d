-- snappass create, as its browser form does: POST / (password, ttl) -> the confirm page,
-- whose link (/<key>~<fernet key>, URL-quoted) goes to ids-<thread>.txt.
local common = require("common")
setup, done = common.setup, common.done({ "ok", "bad" })
ok, bad = 0, 0
local ids

function init(args)
  wrk.method = "POST"
  wrk.path = "/"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Accept"] = "text/html"
  wrk.body = "password=correct+horse+battery+staple&ttl=Hour"
  ids = common.appender("ids")
end

function response(status, headers, body)
  local link = status == 200 and body:match('id="password%-link" value="https?://[^/"]+/([^"]+)"')
  if link then
    ok = ok + 1
    ids:write(link, "\n")
  else
    bad = bad + 1
  end
end
