-- Stamps (docs/protocol/access.md, "Stamp: a reveal in one request") for the reveal flow:
-- "s1." .. id .. "." .. t .. "." .. b64url(16 random bytes), the salt from OpenSSL's
-- RAND_bytes (libcrypto, which wrk itself links) through LuaJIT's FFI.
local ffi = require("ffi")
local access = require("access")
ffi.cdef([[
int RAND_bytes(unsigned char *buf, int num);
]])
local crypto = ffi.load("libcrypto.so.3")
local SALT_BYTES = 16
local salt = ffi.new("unsigned char[?]", SALT_BYTES)

local M = {}

-- A stamp for a secret id (its base64url text, as in the link) at Unix time t, rounded down
-- to the minute as clients do (access.md: the stamp does not show the clock to the second).
function M.make(id, t)
  assert(crypto.RAND_bytes(salt, SALT_BYTES) == 1, "RAND_bytes failed")
  t = t - t % 60
  return string.format("s1.%s.%d.%s", id, t, access.b64url_encode(ffi.string(salt, SALT_BYTES)))
end

return M
