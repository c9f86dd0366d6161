-- HLS playlist rewriting for the nginx-lua baseline: every URI the player fetches from this
-- edge (segment and variant lines, and the URI="..." attribute of the tags below) gets the
-- viewer's token, replacing any token already there. URIs on another host or with another
-- scheme are left alone.

local find, sub, lower, gsub = string.find, string.sub, string.lower, string.gsub
local concat = table.concat

local _M = {}

local TAGS_WITH_URI = {
    "#EXT-X-KEY:", "#EXT-X-SESSION-KEY:", "#EXT-X-MAP:", "#EXT-X-MEDIA:",
    "#EXT-X-I-FRAME-STREAM-INF:", "#EXT-X-PART:", "#EXT-X-PRELOAD-HINT:",
    "#EXT-X-RENDITION-REPORT:", "#EXT-X-SESSION-DATA:",
}

local function has_uri_tag(line)
    for i = 1, #TAGS_WITH_URI do
        local tag = TAGS_WITH_URI[i]
        if sub(line, 1, #tag) == tag then
            return true
        end
    end
    return false
end

-- Relative references and absolute paths resolve against this edge; absolute http(s) URIs
-- only when they name the viewer's own Host.
local function served_here(uri, host)
    local rest
    if sub(uri, 1, 2) == "//" then
        rest = sub(uri, 3)
    else
        local scheme, after = uri:match("^([%a][%w+.-]*):(.*)$")
        if not scheme then
            return true
        end
        scheme = lower(scheme)
        if sub(after, 1, 2) ~= "//" or (scheme ~= "http" and scheme ~= "https") then
            return false
        end
        rest = sub(after, 3)
    end
    local authority = rest:match("^[^/?#]*")
    return host ~= nil and lower(authority) == lower(host)
end

local function with_token(uri, name, pair, host)
    if not served_here(uri, host) then
        return uri
    end
    local fragment = ""
    local hash = find(uri, "#", 1, true)
    if hash then
        fragment = sub(uri, hash)
        uri = sub(uri, 1, hash - 1)
    end
    local q = find(uri, "?", 1, true)
    if not q then
        return uri .. "?" .. pair .. fragment
    end
    local kept = {}
    for p in sub(uri, q + 1):gmatch("[^&]+") do
        local key = p:match("^[^=]*")
        if key ~= name then
            kept[#kept + 1] = p
        end
    end
    kept[#kept + 1] = pair
    return sub(uri, 1, q) .. concat(kept, "&") .. fragment
end

-- Rewrites the value of the attribute named exactly URI (not SERVER-URI, X-URI, ...).
local function rewrite_tag(line, name, pair, host)
    return (gsub(line, '([:,])URI="([^"]*)"', function(sep, uri)
        return sep .. 'URI="' .. with_token(uri, name, pair, host) .. '"'
    end))
end

-- Rewrites a whole playlist; `pair` is the already-encoded `name=value` query pair.
function _M.rewrite(text, name, pair, host)
    local out = {}
    local n = 0
    local pos = 1
    local len = #text
    while pos <= len do
        local nl = find(text, "\n", pos, true)
        local line_end = nl or len
        local line = sub(text, pos, line_end)
        local content, ending = line:match("^(.-)(\r?\n?)$")
        local lead, trimmed, trail = content:match("^(%s*)(.-)(%s*)$")
        if trimmed == "" then
            n = n + 1; out[n] = line
        elseif sub(trimmed, 1, 1) ~= "#" then
            n = n + 1; out[n] = lead .. with_token(trimmed, name, pair, host) .. trail .. ending
        elseif has_uri_tag(content) then
            n = n + 1; out[n] = rewrite_tag(content, name, pair, host) .. ending
        else
            n = n + 1; out[n] = line
        end
        pos = line_end + 1
    end
    return concat(out)
end

return _M
