// Play token v1 for CDN edge runtimes (Cloudflare Workers, Deno, Node >= 20): the same rules as
// livegate-core's verifier, on WebCrypto alone so that one file runs unchanged everywhere.
//
//   token = base64url(room_id "|" exp "|" lowercase_hex(HMAC-SHA256(key, room_id "|" exp)))
//
// Room ids and expiries are unsigned 64-bit integers, which JavaScript numbers cannot hold
// exactly, so they are handled as canonical decimal strings and compared as BigInts.

/** Tokens longer than this are refused before any decoding work is done. */
export const MAX_TOKEN_LEN = 512;

const SIG_HEX_LEN = 64;
const U64_MAX = (1n << 64n) - 1n;
const encoder = new TextEncoder();

// base64 symbol -> 6-bit value, for both alphabets; which alphabet a token uses is decided by
// its distinctive characters before decoding.
const SYMBOLS = new Map();
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
  .split("")
  .forEach((c, i) => SYMBOLS.set(c, i));
SYMBOLS.set("+", 62).set("/", 63).set("-", 62).set("_", 63);

/**
 * Decodes either base64 alphabet, padded or not, the way livegate-core does: the alphabet is
 * chosen by `-_` versus `+/` (a token with both is malformed), `=` may only end the last quad,
 * and non-zero trailing bits are refused so that one token has exactly one spelling (otherwise
 * changing a character would not always change the token). Returns the bytes or null.
 */
function decodeBase64(text) {
  const urlSafe = /[-_]/.test(text);
  const standard = /[+/]/.test(text);
  if (urlSafe && standard) return null;
  let end = text.length;
  while (end > 0 && text[end - 1] === "=") end--;
  const pad = text.length - end;
  const rem = end % 4;
  // One leftover symbol carries no whole byte; padding belongs only after two or three symbols
  // and never beyond the quad (fewer `=` than canonical is tolerated, as by the Rust decoder).
  if (end === 0 || rem === 1 || (pad > 0 && (rem < 2 || rem + pad > 4))) return null;
  const out = new Uint8Array(Math.floor((end * 6) / 8));
  let acc = 0;
  let bits = 0;
  let n = 0;
  for (let i = 0; i < end; i++) {
    const value = SYMBOLS.get(text[i]);
    if (value === undefined) return null;
    acc = ((acc << 6) | value) & 0xffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) return null;
  return out;
}

function encodeBase64Url(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The value of `digits` if it is a canonical unsigned decimal that fits in 64 bits. */
function canonicalU64(digits) {
  if (!/^(0|[1-9][0-9]{0,19})$/.test(digits)) return null;
  const value = BigInt(digits);
  return value <= U64_MAX ? value : null;
}

function hexBytes(hex) {
  if (hex.length !== SIG_HEX_LEN || !/^[0-9a-fA-F]+$/.test(hex)) return null;
  const out = new Uint8Array(SIG_HEX_LEN / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function toHex(bytes) {
  let hex = "";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return hex;
}

// Importing a key is far more work than one HMAC, and edge runtimes keep module state between
// requests: import each configured key once. The bound only matters for a caller that passes
// ever-new keys.
const KEY_CACHE_LIMIT = 32;
const importedKeys = new Map();

function hmacKey(key) {
  if (typeof key !== "string" || key === "") {
    throw new TypeError("play token keys must be non-empty strings");
  }
  let imported = importedKeys.get(key);
  if (imported === undefined) {
    if (importedKeys.size >= KEY_CACHE_LIMIT) importedKeys.clear();
    imported = crypto.subtle.importKey(
      "raw",
      encoder.encode(key),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    // A failed import must not stay cached.
    imported.catch(() => importedKeys.delete(key));
    importedKeys.set(key, imported);
  }
  return imported;
}

async function hmac(key, message) {
  return new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(key), message));
}

// Looks at every byte whatever the inputs, so the time taken does not tell an attacker how
// much of a forged signature was right.
function equalBytes(a, b) {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ (b[i] ?? 0);
  return diff === 0;
}

/** A room id as the canonical decimal string a token carries, or null. */
function roomString(roomId) {
  if (typeof roomId === "bigint") return roomId >= 0n && roomId <= U64_MAX ? roomId.toString() : null;
  if (typeof roomId === "number") {
    // Above 2^53 a number is no longer the id it was written as: ask for a string or BigInt.
    if (!Number.isSafeInteger(roomId)) throw new TypeError("roomId must be a safe integer");
    return roomId >= 0 ? String(roomId) : null;
  }
  // A path segment is compared as written: "042" names no room, so no token matches it.
  return typeof roomId === "string" ? roomId : null;
}

function seconds(value, name) {
  if (typeof value === "bigint" && value >= 0n) return value;
  if (typeof value === "number" && Number.isFinite(value) && value >= 0) {
    return BigInt(Math.floor(value));
  }
  throw new TypeError(`${name} must be a non-negative number of seconds`);
}

/**
 * Verifies a play token.
 *
 * @param {string | null | undefined} token the `token` query parameter, decoded; absent means
 *   `missing`.
 * @param {object} options
 * @param {string[]} options.keys accepted keys, newest first (any of them verifies).
 * @param {number | bigint} [options.now] unix seconds; default the current time.
 * @param {number | bigint} [options.leeway] seconds a token stays valid past `exp`; default 0.
 * @param {string | number | bigint} options.roomId the room the request names (the path's
 *   `{stream}` as written, or a number).
 * @returns {Promise<{ok: true, roomId: string, exp: string} | {ok: false, reason: string}>}
 *   `roomId` and `exp` as canonical decimal strings (they may exceed 2^53); `reason` one of
 *   `missing`, `malformed`, `bad_signature`, `expired`, `wrong_room`.
 */
export async function verify(token, { keys, now, leeway = 0, roomId }) {
  if (!Array.isArray(keys) || keys.length === 0) {
    throw new TypeError("at least one play token key is required");
  }
  const nowS = seconds(now ?? Date.now() / 1000, "now");
  const leewayS = seconds(leeway, "leeway");
  if (token === null || token === undefined) return { ok: false, reason: "missing" };
  if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_LEN) {
    return { ok: false, reason: "malformed" };
  }
  const payload = decodeBase64(token);
  if (payload === null || payload.some((b) => b > 0x7f)) return { ok: false, reason: "malformed" };
  const fields = String.fromCharCode(...payload).split("|");
  if (fields.length !== 3) return { ok: false, reason: "malformed" };
  const [room, exp, sigHex] = fields;
  const roomValue = canonicalU64(room);
  const expValue = canonicalU64(exp);
  const sig = hexBytes(sigHex);
  if (roomValue === null || expValue === null || sig === null) {
    return { ok: false, reason: "malformed" };
  }
  const message = payload.subarray(0, room.length + 1 + exp.length);
  let signed = false;
  for (const key of keys) {
    if (equalBytes(await hmac(key, message), sig)) {
      signed = true;
      break;
    }
  }
  if (!signed) return { ok: false, reason: "bad_signature" };
  if (nowS > expValue + leewayS) return { ok: false, reason: "expired" };
  if (roomString(roomId) !== room) return { ok: false, reason: "wrong_room" };
  return { ok: true, roomId: room, exp };
}

/**
 * Mints a token for `roomId`, valid through unix second `exp`, signed with `key` (base64url
 * without padding, as livegate's own minting).
 *
 * @param {string | number | bigint} roomId
 * @param {string | number | bigint} exp
 * @param {string} key
 * @returns {Promise<string>}
 */
export async function mint(roomId, exp, key) {
  const room = canonicalU64(String(roomId));
  const expiry = canonicalU64(String(exp));
  if (room === null || expiry === null) {
    throw new RangeError("room id and expiry must be unsigned 64-bit integers");
  }
  const message = `${room}|${expiry}`;
  const sig = toHex(await hmac(key, encoder.encode(message)));
  return encodeBase64Url(encoder.encode(`${message}|${sig}`));
}
