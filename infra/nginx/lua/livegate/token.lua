-- Play token v1 verification (see the play-token-v1 contract): the same rules as
-- livegate-core's verifier, for the nginx-lua baseline.
--
--   token = base64(room_id "|" exp "|" lowercase_hex(HMAC-SHA256(key, room_id "|" exp)))
--
-- HMAC-SHA256 comes from libcrypto through the LuaJIT FFI, so no lua-resty-* library beyond
-- what Debian ships with libnginx-mod-http-lua is needed.

local ffi = require("ffi")
local bit = require("bit")
local b64 = require("ngx.base64")

local byte, find, sub = string.byte, string.find, string.sub
local bor, bxor = bit.bor, bit.bxor
local decode_base64, encode_base64 = ngx.decode_base64, ngx.encode_base64
local decode_base64url, encode_base64url = b64.decode_base64url, b64.encode_base64url

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md,
                    unsigned int *md_len);
]]

-- nginx already links libcrypto; load it by name anyway so the symbols resolve even when the
-- binary was linked with -Bsymbolic or the like.
local crypto
do
    local ok, lib = pcall(ffi.load, "libcrypto.so.3")
    crypto = ok and lib or ffi.C
end

local SHA256 = crypto.EVP_sha256()
local digest = ffi.new("unsigned char[32]")
local digest_len = ffi.new("unsigned int[1]")

local MAX_TOKEN_LEN = 512
local U64_MAX = "18446744073709551615"

local _M = {}

local keys = {}
local leeway = 0

-- Configures the accepted keys (newest first) and the expiry leeway in seconds.
function _M.configure(key_list, leeway_s)
    keys = {}
    for _, key in ipairs(key_list) do
        if key ~= "" then
            keys[#keys + 1] = key
        end
    end
    assert(#keys > 0, "at least one token key is required")
    leeway = tonumber(leeway_s) or 0
end

-- Reads LIVEGATE_TOKEN_KEYS (comma-separated, newest first) and LIVEGATE_TOKEN_LEEWAY_S.
function _M.configure_from_env()
    local list = {}
    for key in string.gmatch(os.getenv("LIVEGATE_TOKEN_KEYS") or "", "[^,]+") do
        list[#list + 1] = key
    end
    _M.configure(list, os.getenv("LIVEGATE_TOKEN_LEEWAY_S"))
end

-- Canonical unsigned decimal that fits in 64 bits: no sign, no leading zero, no spaces.
-- Kept as a string (Lua numbers are doubles and cannot hold every u64).
local function canonical_u64(s)
    local n = #s
    if n == 0 or n > 20 or not find(s, "^%d+$") then
        return false
    end
    if n > 1 and byte(s, 1) == 48 then -- '0'
        return false
    end
    return n < 20 or s <= U64_MAX
end
_M.canonical_u64 = canonical_u64

-- Value of one hex digit, or nil.
local function hexval(c)
    if c >= 48 and c <= 57 then return c - 48 end      -- 0-9
    if c >= 97 and c <= 102 then return c - 87 end     -- a-f
    if c >= 65 and c <= 70 then return c - 55 end      -- A-F
    return nil
end

-- Whether `sig` (64 hex digits, either case) equals the 32-byte digest, in constant time.
local function sig_matches(sig)
    local diff = 0
    for i = 0, 31 do
        local hi = hexval(byte(sig, 2 * i + 1))
        local lo = hexval(byte(sig, 2 * i + 2))
        if hi == nil or lo == nil then
            return false
        end
        diff = bor(diff, bxor(hi * 16 + lo, digest[i]))
    end
    return diff == 0
end

-- Decodes either base64 alphabet, padded or not, refusing non-canonical spellings (stray
-- trailing bits, characters after the padding, mixed alphabets).
local function decode_lenient(token)
    local url_safe = find(token, "[-_]") ~= nil
    local standard = find(token, "[+/]") ~= nil
    if url_safe and standard then
        return nil
    end
    local body = token
    local pad = 0
    while pad < 2 and byte(body, #body) == 61 do -- '='
        body = sub(body, 1, #body - 1)
        pad = pad + 1
    end
    if body == "" or find(body, "=", 1, true) or (pad > 0 and (#body + pad) % 4 ~= 0) then
        return nil
    end
    local decoded, again
    if standard then
        decoded = decode_base64(body)
        again = decoded and encode_base64(decoded, true)
    else
        decoded = decode_base64url(body)
        again = decoded and encode_base64url(decoded)
    end
    if not decoded or again ~= body then
        return nil
    end
    return decoded
end

-- Verifies `token` for the room named by the request path (`path_room`, the decimal string as
-- it appears in the path) at unix second `now`. Returns true, exp or nil, reason.
function _M.verify(token, path_room, now)
    if token == nil then
        return nil, "missing"
    end
    local len = #token
    if len == 0 or len > MAX_TOKEN_LEN then
        return nil, "malformed"
    end
    local payload = decode_lenient(token)
    if payload == nil or find(payload, "[\128-\255]") then
        return nil, "malformed"
    end
    local bar1 = find(payload, "|", 1, true)
    local bar2 = bar1 and find(payload, "|", bar1 + 1, true)
    if not bar2 or find(payload, "|", bar2 + 1, true) then
        return nil, "malformed"
    end
    local room = sub(payload, 1, bar1 - 1)
    local exp = sub(payload, bar1 + 1, bar2 - 1)
    local sig = sub(payload, bar2 + 1)
    if #sig ~= 64 or not canonical_u64(room) or not canonical_u64(exp)
        or not find(sig, "^%x+$") then
        return nil, "malformed"
    end
    local message_len = bar2 - 1
    local signed = false
    for i = 1, #keys do
        local key = keys[i]
        crypto.HMAC(SHA256, key, #key, payload, message_len, digest, digest_len)
        if sig_matches(sig) then
            signed = true
            break
        end
    end
    if not signed then
        return nil, "bad_signature"
    end
    if now > tonumber(exp) + leeway then
        return nil, "expired"
    end
    if room ~= path_room then
        return nil, "wrong_room"
    end
    return true, exp
end

return _M
