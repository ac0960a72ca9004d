-- Shared by the bench scripts (wrk 4 with LuaJIT). Each wrk thread has its own Lua state
-- and one connection (-t N -c N). setup() numbers the threads; done() reads their counters
-- (globals of each thread's state) and prints one line "BENCH_JSON {...}" after wrk's report.
-- Files of thread k live in $BENCH_DIR as <name>-<k>.txt, one item a line.
-- $BENCH_ADDRS ("127.0.0.1:8001,127.0.0.1:8002") spreads the threads over several servers,
-- thread k to address k mod n, like a round-robin balancer with sticky connections.
local M = {}
local threads = {}
local addrs

local function spread()
  local list = {}
  for host, port in (os.getenv("BENCH_ADDRS") or ""):gmatch("([^,]+):(%d+)") do
    list[#list + 1] = assert(wrk.lookup(host, port)[1], "cannot resolve " .. host)
  end
  return list
end

function M.setup(thread)
  addrs = addrs or spread()
  if #addrs > 0 then
    thread.addr = addrs[#threads % #addrs + 1]
  end
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

local function path(name)
  return os.getenv("BENCH_DIR") .. "/" .. name .. "-" .. tid .. ".txt"
end

function M.lines(name)
  local items = {}
  for line in io.lines(path(name)) do
    items[#items + 1] = line
  end
  return items
end

-- The lines of <name>-<k>.txt, or nil when the harness wrote no such file.
function M.lines_if_present(name)
  local f = io.open(path(name), "r")
  if f == nil then
    return nil
  end
  f:close()
  return M.lines(name)
end

-- Line-buffered: a thread's Lua state is never closed, so nothing may wait in a buffer.
function M.appender(name)
  local f = assert(io.open(path(name), "w"))
  f:setvbuf("line")
  return f
end

function M.done(counters)
  return function(summary, latency, requests)
    local per_thread = {}
    for i, thread in ipairs(threads) do
      local fields = {}
      for _, name in ipairs(counters) do
        local value = thread:get(name)
        if type(value) == "number" then
          fields[#fields + 1] = string.format('"%s":%.0f', name, value)
        else
          fields[#fields + 1] = string.format('"%s":"%s"', name, tostring(value or ""))
        end
      end
      per_thread[i] = "{" .. table.concat(fields, ",") .. "}"
    end
    local e = summary.errors
    io.write(string.format(
      'BENCH_JSON {"duration_us":%.0f,"requests":%.0f,"bytes":%.0f,'
        .. '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},'
        .. '"latency_us":{"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f,"mean":%.1f},'
        .. '"threads":[%s]}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean, table.concat(per_thread, ",")))
  end
end

return M
