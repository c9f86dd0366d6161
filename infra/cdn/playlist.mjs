// HLS playlist rewriting at the CDN edge, as livegate-proxy does it for its own viewers: every
// URI the player fetches from this edge gets the viewer's token, so that segment, variant, key,
// init-section and LL-HLS requests pass the same check as the playlist did.
//
// URIs appear on their own line (segments, variants) and as the quoted URI attribute of the tags
// below (RFC 8216 and the LL-HLS additions). A URI on another host keeps no token: the token is
// a credential for this edge only. "Another host" is decided by WHATWG URL parsing, the way the
// player's browser will resolve it, so `/\evil.example/x.ts` is the other host it really is.

/** Tags whose `URI="..."` attribute names something the player fetches. */
export const TAGS_WITH_URI = [
  "#EXT-X-KEY:",
  "#EXT-X-SESSION-KEY:",
  "#EXT-X-MAP:",
  "#EXT-X-MEDIA:",
  "#EXT-X-I-FRAME-STREAM-INF:",
  "#EXT-X-PART:",
  "#EXT-X-PRELOAD-HINT:",
  "#EXT-X-RENDITION-REPORT:",
  "#EXT-X-SESSION-DATA:",
];

// A host that cannot exist: a URI that still resolves onto it was relative to the playlist.
const BASE_HOST = "edge.livegate.invalid";
const BASE = `http://${BASE_HOST}/live/playlist.m3u8`;

// Everything but RFC 3986 unreserved characters is percent-encoded (`+`, `/` and `=` of a
// standard-alphabet token included).
function encodeQueryComponent(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * What rewriting adds, prepared once per viewer request: the token parameter `name`, its
 * encoded `name=value` pair, and the `host[:port]` names under which viewers reach this edge.
 */
export function tokenParam(name, token, hosts) {
  return {
    name,
    pair: `${encodeQueryComponent(name)}=${encodeQueryComponent(token)}`,
    hosts: new Set([...hosts].map((h) => h.toLowerCase())),
  };
}

/**
 * Whether `uri`, resolved against a playlist of this edge, points back at this edge: relative
 * references do, absolute http(s) URIs do when their `host[:port]` is one of `hosts`
 * (lower-case), other schemes (`data:`, `skd://`) never.
 */
export function isServedHere(uri, hosts) {
  let resolved;
  try {
    resolved = new URL(uri, BASE);
  } catch {
    return false;
  }
  if (resolved.protocol !== "http:" && resolved.protocol !== "https:") return false;
  if (resolved.hostname === BASE_HOST) {
    return resolved.protocol === "http:" && resolved.port === "";
  }
  return hosts.has(resolved.host.toLowerCase());
}

/**
 * `uri` with the token pair of `param` added to its query (replacing any parameter of the same
 * name already there), or unchanged when it points elsewhere.
 */
export function withToken(uri, { name, pair, hosts }) {
  if (!isServedHere(uri, hosts)) return uri;
  const hash = uri.indexOf("#");
  const beforeFragment = hash < 0 ? uri : uri.slice(0, hash);
  const fragment = hash < 0 ? "" : uri.slice(hash);
  const question = beforeFragment.indexOf("?");
  const path = question < 0 ? beforeFragment : beforeFragment.slice(0, question);
  const kept =
    question < 0
      ? []
      : beforeFragment
          .slice(question + 1)
          .split("&")
          .filter((p) => p !== "" && p.split("=")[0] !== name);
  kept.push(pair);
  return `${path}?${kept.join("&")}${fragment}`;
}

// Rewrites the value of the attribute named exactly URI (not SERVER-URI or X-URI), walking the
// attribute list so that a quoted value containing `,URI="` cannot be mistaken for one.
function rewriteAttributes(line, param) {
  const colon = line.indexOf(":");
  let out = line.slice(0, colon + 1);
  let rest = line.slice(colon + 1);
  while (rest !== "") {
    const eq = rest.indexOf("=");
    if (eq < 0) return out + rest;
    const name = rest.slice(0, eq);
    out += `${name}=`;
    rest = rest.slice(eq + 1);
    if (rest.startsWith('"')) {
      const close = rest.indexOf('"', 1);
      // Unterminated quote: leave the remainder as it is.
      if (close < 0) return out + rest;
      const value = rest.slice(1, close);
      out += `"${name.trim() === "URI" ? withToken(value, param) : value}"`;
      rest = rest.slice(close + 1);
    } else {
      const comma = rest.indexOf(",");
      const end = comma < 0 ? rest.length : comma;
      out += rest.slice(0, end);
      rest = rest.slice(end);
    }
    if (!rest.startsWith(",")) return out + rest;
    out += ",";
    rest = rest.slice(1);
  }
  return out;
}

/**
 * Rewrites a playlist so that each URI served by this edge carries the token of `param` (from
 * `tokenParam`). Line endings, blank lines and a missing final newline are kept.
 */
export function rewrite(text, param) {
  let out = "";
  let start = 0;
  while (start < text.length) {
    const newline = text.indexOf("\n", start);
    const end = newline < 0 ? text.length : newline + 1;
    const line = text.slice(start, end);
    start = end;
    const withoutLf = line.endsWith("\n") ? line.slice(0, -1) : line;
    const content = withoutLf.endsWith("\r") ? withoutLf.slice(0, -1) : withoutLf;
    const ending = line.slice(content.length);
    const trimmed = content.trim();
    if (trimmed === "") {
      out += line;
    } else if (!trimmed.startsWith("#")) {
      const lead = content.length - content.trimStart().length;
      const uri = withToken(trimmed, param);
      out += content.slice(0, lead) + uri + content.slice(lead + trimmed.length) + ending;
    } else if (TAGS_WITH_URI.some((tag) => content.startsWith(tag))) {
      out += rewriteAttributes(content, param) + ending;
    } else {
      out += line;
    }
  }
  return out;
}
