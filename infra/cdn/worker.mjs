// Cloudflare Worker in front of livegate-proxy in CDN-verifies mode: the viewer's play token is
// checked here, at the CDN edge, and livegate (which lists this CDN under `[cdn]`) serves the
// Worker without one. Because the token never reaches livegate, the URL fetched from it is the
// same for every viewer and Cloudflare's cache keeps one copy of each playlist and segment.
//
// Environment (see docs/cdn.md):
//   LIVEGATE_ORIGIN            livegate-proxy's base URL, e.g. https://edge-origin.example.com
//   LIVEGATE_TOKEN_KEYS        play token keys, comma-separated, newest first (a secret)
//   LIVEGATE_TOKEN_LEEWAY_S    seconds a token stays valid past its expiry (default 0)
//   LIVEGATE_CDN_SECRET        value of the header that makes livegate trust this Worker (a secret)
//   LIVEGATE_CDN_SECRET_HEADER its name (default x-livegate-cdn-secret, as livegate's default)
//   LIVEGATE_HOSTNAMES         more host[:port] names viewers use for this edge (optional)
//   LIVEGATE_ALLOWED_ORIGINS   web player origins allowed by CORS, comma-separated, or * (optional)

import { verify } from "./play-token-v1.mjs";
import { rewrite, tokenParam, withToken } from "./playlist.mjs";

const TOKEN_PARAM = "token";
// Live playlists are a few kilobytes; the bound keeps a broken origin from exhausting memory.
const MAX_PLAYLIST_BYTES = 4 * 1024 * 1024;
// No file system stores a longer name, so no media path has a longer segment.
const MAX_PATH_SEGMENT = 255;
const U64_MAX = (1n << 64n) - 1n;

// livegate-proxy's SRS defaults. Each capture is as short as the rest of the pattern allows,
// leftmost first, as in the proxy, so `42-7.ts` is room 42's segment 7.
const ROUTES = [
  ["flv", /^\/[^/]+?\/([^/]+?)\.flv$/],
  ["playlist", /^\/[^/]+?\/([^/]+?)\.m3u8$/],
  ["playlist", /^\/[^/]+?\/([^/]+?)-[^/]+?\.m3u8$/],
  ["segment", /^\/[^/]+?\/([^/]+?)-[^/]+?\.(?:ts|m4s|aac|mp4)$/],
];

// Request headers passed on to livegate. Nothing that identifies the viewer (cookies,
// Authorization, Origin) goes upstream: the answer is cached and served to everyone.
const FORWARDED_HEADERS = ["accept", "range", "if-range", "if-none-match", "if-modified-since"];

// CORS headers are this edge's policy; whatever livegate sent for its own viewers is dropped.
const CORS_HEADERS = [
  "access-control-allow-origin",
  "access-control-allow-credentials",
  "access-control-allow-methods",
  "access-control-allow-headers",
  "access-control-expose-headers",
  "access-control-max-age",
];

function text(status, body, extra = {}) {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...extra },
  });
}

function isRoomId(stream) {
  return /^(0|[1-9][0-9]{0,19})$/.test(stream) && BigInt(stream) <= U64_MAX;
}

/** The route of a decoded path: `{kind, stream}`, or null. */
export function route(path) {
  if (path.split("/").some((segment) => segment.length > MAX_PATH_SEGMENT)) return null;
  let first = null;
  for (const [kind, pattern] of ROUTES) {
    const match = pattern.exec(path);
    if (match === null) continue;
    const found = { kind, stream: match[1] };
    // The first pattern whose {stream} is a room id wins, failing that the first that matches
    // (so `42-hi.m3u8` is room 42's variant, not the non-room `42-hi`).
    if (isRoomId(found.stream)) return found;
    first ??= found;
  }
  return first;
}

function percentDecodeBytes(value) {
  const bytes = new TextEncoder().encode(value);
  const out = new Uint8Array(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const hex = bytes[i] === 0x25 ? String.fromCharCode(bytes[i + 1], bytes[i + 2]) : "";
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      out[n++] = parseInt(hex, 16);
      i += 2;
    } else {
      // A `%` not followed by two hex digits stays as it is, as in livegate-core.
      out[n++] = bytes[i];
    }
  }
  return out.subarray(0, n);
}

function percentDecode(value, { fatal }) {
  try {
    return new TextDecoder("utf-8", { fatal }).decode(percentDecodeBytes(value));
  } catch {
    return null;
  }
}

/**
 * The `token` parameter as livegate-core reads it: the first occurrence, percent-decoded, with
 * `+` kept as `+` (form decoding would turn a pasted standard-alphabet token's `+` into a
 * space). Null when absent or not UTF-8.
 */
export function tokenFromQuery(query, name = TOKEN_PARAM) {
  for (const pair of query.split("&")) {
    const eq = pair.indexOf("=");
    const key = eq < 0 ? pair : pair.slice(0, eq);
    if (percentDecode(key, { fatal: true }) !== name) continue;
    return percentDecode(eq < 0 ? "" : pair.slice(eq + 1), { fatal: true });
  }
  return null;
}

/** `query` without any `name` parameter, however its name is encoded; "" when nothing is left. */
export function stripParam(query, name = TOKEN_PARAM) {
  return query
    .split("&")
    .filter((pair) => pair !== "" && percentDecode(pair.split("=")[0], { fatal: false }) !== name)
    .join("&");
}

/**
 * The path percent-decoded, or null when it is one livegate refuses (encoded separators, dot
 * segments, NUL, double encoding): the room is then read from the same path livegate will see.
 */
export function decodePath(raw) {
  const bytes = new TextEncoder().encode(raw);
  const out = [];
  for (let i = 0; i < bytes.length; i++) {
    let byte = bytes[i];
    if (byte === 0x25) {
      const hex = String.fromCharCode(bytes[i + 1] ?? 0, bytes[i + 2] ?? 0);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return null;
      byte = parseInt(hex, 16);
      if (byte === 0x2f || byte === 0x25) return null;
      i += 2;
    }
    if (byte === 0 || byte === 0x5c) return null;
    out.push(byte);
  }
  let path;
  try {
    path = new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(out));
  } catch {
    return null;
  }
  return path.split("/").some((s) => s === "." || s === "..") ? null : path;
}

function list(value) {
  return (value ?? "").split(",").filter((item) => item !== "");
}

/** The settings `env` describes, or the names of the ones that are wrong. */
function settings(env) {
  const problems = [];
  // Split as infra/nginx's token.lua does, so both edges read one LIVEGATE_TOKEN_KEYS alike.
  const keys = list(env.LIVEGATE_TOKEN_KEYS);
  if (keys.length === 0) problems.push("LIVEGATE_TOKEN_KEYS");
  const leewayText = String(env.LIVEGATE_TOKEN_LEEWAY_S ?? "0").trim();
  if (!/^[0-9]{1,9}$/.test(leewayText)) problems.push("LIVEGATE_TOKEN_LEEWAY_S");
  let origin = null;
  try {
    origin = new URL(env.LIVEGATE_ORIGIN);
    if (!/^https?:$/.test(origin.protocol) || origin.search !== "" || origin.hash !== "") origin = null;
  } catch {
    origin = null;
  }
  if (origin === null) problems.push("LIVEGATE_ORIGIN");
  const secret = env.LIVEGATE_CDN_SECRET ?? "";
  // livegate refuses shorter secrets; failing here says so before any viewer sees a 403.
  if (secret.length < 16) problems.push("LIVEGATE_CDN_SECRET");
  const secretHeader = env.LIVEGATE_CDN_SECRET_HEADER || "x-livegate-cdn-secret";
  return {
    problems,
    keys,
    leeway: Number(leewayText),
    origin: origin && `${origin.origin}${origin.pathname.replace(/\/$/, "")}`,
    secret,
    secretHeader,
    hostnames: list(env.LIVEGATE_HOSTNAMES),
    allowedOrigins: list(env.LIVEGATE_ALLOWED_ORIGINS).map((o) => o.trim()),
  };
}

function allowOrigin(request, allowed) {
  const origin = request.headers.get("origin");
  if (origin === null) return null;
  if (allowed.includes("*")) return "*";
  return allowed.some((a) => a.toLowerCase() === origin.toLowerCase()) ? origin : null;
}

function applyCors(headers, allowedOrigin) {
  for (const name of CORS_HEADERS) headers.delete(name);
  if (allowedOrigin !== null) {
    headers.set("access-control-allow-origin", allowedOrigin);
    headers.append("vary", "Origin");
  }
}

function preflight(request, allowedOrigin) {
  if (allowedOrigin === null) return text(403, "forbidden\n");
  const headers = new Headers({
    "access-control-allow-origin": allowedOrigin,
    "access-control-allow-methods": "GET, HEAD, OPTIONS",
    "access-control-max-age": "600",
    vary: "Origin",
  });
  const requested = request.headers.get("access-control-request-headers");
  if (requested !== null) headers.set("access-control-allow-headers", requested);
  return new Response(null, { status: 204, headers });
}

async function readCapped(body, limit) {
  if (body === null) return "";
  const reader = body.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(all);
  } catch {
    return null;
  }
}

function defaultLog(entry) {
  console.log(JSON.stringify(entry));
}

/**
 * Serves one viewer request. `fetch` reaches livegate (injectable for tests); `log` receives
 * refusals and failures as objects that never contain a token or a secret.
 */
export async function handle(request, env, options = {}) {
  const { fetch: upstream = (target, init) => fetch(target, init), log = defaultLog } = options;
  const config = settings(env);
  const allowedOrigin = allowOrigin(request, config.allowedOrigins);
  if (request.method === "OPTIONS") return preflight(request, allowedOrigin);
  if (request.method !== "GET" && request.method !== "HEAD") {
    return text(405, "method not allowed\n", { allow: "GET, HEAD, OPTIONS" });
  }
  if (config.problems.length > 0) {
    log({ event: "edge misconfigured", settings: config.problems });
    return text(500, "edge misconfigured\n");
  }
  const url = new URL(request.url);
  const path = decodePath(url.pathname);
  if (path === null) return text(400, "bad request path\n");
  const found = route(path);
  if (found === null) return text(404, "not found\n");

  const query = url.search.slice(1);
  const token = tokenFromQuery(query);
  const verdict = await verify(token, { keys: config.keys, leeway: config.leeway, roomId: found.stream });
  if (!verdict.ok) {
    // The reason is for logs and metrics only; the viewer learns nothing from the answer.
    log({ event: "play token refused", reason: verdict.reason, kind: found.kind, stream: found.stream });
    return text(403, "forbidden\n");
  }

  const headers = new Headers();
  for (const name of FORWARDED_HEADERS) {
    const value = request.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  headers.set(config.secretHeader, config.secret);
  const rest = stripParam(query);
  const target = `${config.origin}${url.pathname}${rest === "" ? "" : `?${rest}`}`;
  const init = { method: request.method, headers, redirect: "manual" };
  if (found.kind !== "flv") {
    // The subrequest URL is the cache key and carries no token, so every viewer shares one
    // copy. TTLs follow livegate's Cache-Control (short for playlists, long for segments);
    // only a missing stream is remembered briefly and errors not at all. FLV gets no hints:
    // Cloudflare does not cache `.flv` by default, and an endless response must never be.
    init.cf = { cacheEverything: true, cacheTtlByStatus: { 404: 1, "500-599": 0 } };
  }
  let response;
  try {
    response = await upstream(target, init);
  } catch (error) {
    log({ event: "livegate unreachable", kind: found.kind, stream: found.stream, error: String(error) });
    return text(502, "bad gateway\n");
  }

  const out = new Headers(response.headers);
  applyCors(out, allowedOrigin);
  const param = tokenParam(TOKEN_PARAM, token, [url.host, ...config.hostnames]);
  const location = out.get("location");
  if (response.status >= 300 && response.status < 400 && location !== null) {
    // livegate redirects pullers without a token; the viewer's next request needs one.
    out.set("location", withToken(location, param));
  }
  if (found.kind !== "playlist" || response.status !== 200) {
    const { status, statusText } = response;
    return new Response(response.body, { status, statusText, headers: out });
  }

  // The rewritten playlist carries this viewer's token: nobody may cache it.
  out.set("cache-control", "private, no-store");
  for (const name of ["content-length", "content-encoding", "etag"]) out.delete(name);
  if (request.method === "HEAD") {
    await response.body?.cancel();
    return new Response(null, { status: 200, headers: out });
  }
  const body = await readCapped(response.body, MAX_PLAYLIST_BYTES);
  if (body === null) {
    log({ event: "playlist unusable", reason: "too large or not UTF-8", stream: found.stream });
    return text(502, "bad gateway\n");
  }
  return new Response(rewrite(body, param), { status: 200, headers: out });
}

export default {
  fetch(request, env) {
    return handle(request, env);
  },
};
