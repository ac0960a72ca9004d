-- The access proof of the ticket step (docs/protocol/access.md, "Key-knowledge proof") for
-- the benchmark's secrets, which create.lua stores with the access key of an all-zero link
-- key: Ed25519 over "atopos/access-proof/v1" 0x00 || secret id || challenge, or over
-- "atopos/stamp-proof/v1" 0x00 || secret id || stamp for a stamp (its own label), signed with
-- OpenSSL's libcrypto (which wrk itself links) through LuaJIT's FFI.
local ffi = require("ffi")
ffi.cdef([[
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_md_ctx_st EVP_MD_CTX;
EVP_PKEY *EVP_PKEY_new_raw_private_key(int type, void *engine, const unsigned char *key, size_t len);
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
int EVP_DigestSignInit(EVP_MD_CTX *ctx, void **pctx, const void *md, void *engine, EVP_PKEY *pkey);
int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sig, size_t *siglen, const unsigned char *tbs, size_t tbslen);
]])
local crypto = ffi.load("libcrypto.so.3")
local NID_ED25519 = 1087
-- HKDF-SHA256(32 zero bytes, info "atopos/access-key/v1"): the private key of create.lua's
-- access key (tests/unit/test_bench_access_key.py holds the two together).
SEED_HEX = "788be37da2cfd6858ec5ae81265633110e354e0e97e1def1e4acfdf91a44a6ae"
-- tests/unit/test_bench_access_key.py holds both labels to crypto/access_proof.py.
local LABEL = "atopos/access-proof/v1\0"
local STAMP_LABEL = "atopos/stamp-proof/v1\0"
local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function from_hex(text)
  return (text:gsub("..", function(pair) return string.char(tonumber(pair, 16)) end))
end

local seed = from_hex(SEED_HEX)
local key = crypto.EVP_PKEY_new_raw_private_key(NID_ED25519, nil, seed, #seed)
assert(key ~= nil, "libcrypto refused the Ed25519 key")
local values = {}
for i = 1, #ALPHABET do
  values[ALPHABET:byte(i)] = i - 1
end

local function b64url_decode(text)
  local out, bits, count = {}, 0, 0
  for i = 1, #text do
    bits, count = bits * 64 + values[text:byte(i)], count + 6
    if count >= 8 then
      count = count - 8
      local byte = math.floor(bits / 2 ^ count)
      out[#out + 1], bits = string.char(byte), bits - byte * 2 ^ count
    end
  end
  return table.concat(out)
end

local function b64url_encode(data)
  local out, bits, count = {}, 0, 0
  for i = 1, #data do
    bits, count = bits * 256 + data:byte(i), count + 8
    while count >= 6 do
      count = count - 6
      local index = math.floor(bits / 2 ^ count)
      out[#out + 1], bits = ALPHABET:sub(index + 1, index + 1), bits - index * 2 ^ count
    end
  end
  if count > 0 then
    local index = bits * 2 ^ (6 - count)
    out[#out + 1] = ALPHABET:sub(index + 1, index + 1)
  end
  return table.concat(out)
end

local M = { b64url_encode = b64url_encode }

local function sign(label, id, text)
  local message = label .. b64url_decode(id) .. text
  local ctx = crypto.EVP_MD_CTX_new()
  local signature = ffi.new("unsigned char[64]")
  local length = ffi.new("size_t[1]", 64)
  local ok = crypto.EVP_DigestSignInit(ctx, nil, nil, nil, key) == 1
    and crypto.EVP_DigestSign(ctx, signature, length, message, #message) == 1
  crypto.EVP_MD_CTX_free(ctx)
  assert(ok, "Ed25519 signing failed")
  return b64url_encode(ffi.string(signature, 64))
end

-- The access proof (unpadded base64url) for a secret id (base64url) and a server challenge.
function M.proof(id, challenge)
  return sign(LABEL, id, challenge)
end

-- The access proof over a stamp this benchmark made: the stamp label, never the challenge's.
function M.stamp_proof(id, stamp)
  return sign(STAMP_LABEL, id, stamp)
end

return M
