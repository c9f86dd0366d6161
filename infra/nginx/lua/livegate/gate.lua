-- Request handling for the nginx-lua baseline: the token check in the access phase, the token
-- removed from the origin request, and playlist rewriting in the body filter.

local token = require("livegate.token")
local playlist = require("livegate.playlist")

local ngx = ngx
local var = ngx.var
local find, sub = string.find, string.sub
local concat = table.concat
local escape_uri, unescape_uri = ngx.escape_uri, ngx.unescape_uri

local PARAM = "token"

local _M = {}

-- The first `token` parameter of the raw query, percent-decoded with `+` kept as `+`
-- (a standard-alphabet token pasted unencoded must still verify), and the query without any
-- `token` parameter (nil when nothing is left).
local function split_query(args)
    if args == nil or args == "" then
        return nil, nil
    end
    local found
    local kept = {}
    for pair in args:gmatch("[^&]+") do
        local eq = find(pair, "=", 1, true)
        local key = eq and sub(pair, 1, eq - 1) or pair
        if key == PARAM then
            if found == nil then
                local value = eq and sub(pair, eq + 1) or ""
                if find(value, "%", 1, true) then
                    value = unescape_uri((value:gsub("%+", "%%2B")))
                end
                found = value
            end
        else
            kept[#kept + 1] = pair
        end
    end
    return found, (#kept > 0) and concat(kept, "&") or nil
end

local function refuse(reason)
    ngx.log(ngx.INFO, "play token refused: ", reason, " ", var.uri)
    ngx.status = ngx.HTTP_FORBIDDEN
    ngx.header["Content-Type"] = "text/plain; charset=utf-8"
    ngx.header["Cache-Control"] = "no-store"
    ngx.header["Content-Length"] = 10
    ngx.print("forbidden\n")
    return ngx.exit(ngx.HTTP_FORBIDDEN)
end

-- access_by_lua: `stream` is the {stream} capture of the location (the room id).
function _M.access(stream, is_playlist)
    local method = ngx.req.get_method()
    if method ~= "GET" and method ~= "HEAD" then
        return ngx.exit(ngx.HTTP_NOT_ALLOWED)
    end
    local tok, rest = split_query(var.args)
    local ok, reason
    if not token.canonical_u64(stream) then
        -- Not a room id: no token can name it.
        ok, reason = nil, tok == nil and "missing" or "wrong_room"
    else
        ok, reason = token.verify(tok, stream, ngx.time())
    end
    if not ok then
        return refuse(reason)
    end
    -- The origin must not see the token.
    ngx.req.set_uri_args(rest or "")
    if is_playlist then
        ngx.ctx.token_pair = PARAM .. "=" .. escape_uri(tok)
        ngx.ctx.host = var.http_host
    end
end

-- header_filter_by_lua for playlists: the body changes length and carries a personal token.
function _M.playlist_header()
    if ngx.status ~= ngx.HTTP_OK or ngx.ctx.token_pair == nil then
        ngx.ctx.token_pair = nil
        return
    end
    ngx.header["Content-Length"] = nil
    ngx.header["Cache-Control"] = "private, no-store"
end

-- body_filter_by_lua for playlists: collect the body, rewrite it once at the end.
function _M.playlist_body()
    local ctx = ngx.ctx
    if ctx.token_pair == nil then
        return
    end
    local chunk, eof = ngx.arg[1], ngx.arg[2]
    local parts = ctx.parts
    if parts == nil then
        parts = {}
        ctx.parts = parts
    end
    if chunk ~= "" then
        parts[#parts + 1] = chunk
    end
    if not eof then
        ngx.arg[1] = nil
        return
    end
    ngx.arg[1] = playlist.rewrite(concat(parts), PARAM, ctx.token_pair, ctx.host)
end

return _M
