import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { MAX_TOKEN_LEN, mint, verify } from "../play-token-v1.mjs";

// Debian 12's Node 18 has WebCrypto only as node:crypto's export; Node >= 20 and the edge
// runtimes have the global the module uses.
globalThis.crypto ??= webcrypto;

// Room ids reach 2^64-1, beyond what JSON.parse keeps exact in a number: read them as strings.
function loadVectors() {
  const path = new URL("../../../core/tests/data/play-token-v1.vectors.json", import.meta.url);
  const text = readFileSync(path, "utf8").replace(/("path_room_id"\s*:\s*)(\d+)/g, '$1"$2"');
  return JSON.parse(text).vectors;
}

const KEY = "livegate-test-secret";
const NOW = 1_800_000_000;

test("every published vector gives its expected verdict", async () => {
  const vectors = loadVectors();
  assert.ok(vectors.length >= 20, "the vector file was read");
  for (const v of vectors) {
    const verdict = await verify(v.token, {
      keys: v.keys,
      now: v.now,
      leeway: v.leeway_s,
      roomId: v.path_room_id,
    });
    if (v.expect === "accept") {
      assert.equal(verdict.ok, true, `${v.name}: ${verdict.reason}`);
      assert.equal(verdict.roomId, v.path_room_id, v.name);
    } else {
      assert.deepEqual(verdict, { ok: false, reason: v.reason }, v.name);
    }
  }
});

test("the largest room id survives as an exact decimal", async () => {
  const max = "18446744073709551615";
  const token = await mint(max, 1_893_456_000, KEY);
  assert.deepEqual(await verify(token, { keys: [KEY], now: NOW, roomId: max }), {
    ok: true,
    roomId: max,
    exp: "1893456000",
  });
  assert.deepEqual(await verify(token, { keys: [KEY], now: NOW, roomId: 18446744073709551615n }), {
    ok: true,
    roomId: max,
    exp: "1893456000",
  });
  await assert.rejects(verify(token, { keys: [KEY], now: NOW, roomId: 18446744073709551615 }), TypeError);
  await assert.rejects(mint("18446744073709551616", 1, KEY), RangeError);
});

test("mint then verify round-trips, and the expiry second itself is valid", async () => {
  const token = await mint(42, NOW + 60, KEY);
  assert.match(token, /^[A-Za-z0-9_-]+$/, "base64url without padding");
  assert.equal(Buffer.from(token, "base64url").toString().split("|")[0], "42");
  for (const roomId of ["42", 42, 42n]) {
    const verdict = await verify(token, { keys: [KEY], now: NOW + 60, roomId });
    assert.deepEqual(verdict, { ok: true, roomId: "42", exp: String(NOW + 60) });
  }
  assert.equal((await verify(token, { keys: [KEY], now: NOW + 61, roomId: 42 })).reason, "expired");
  assert.equal((await verify(token, { keys: [KEY], now: NOW + 61, leeway: 1, roomId: 42 })).ok, true);
  assert.equal((await verify(token, { keys: [KEY], now: NOW, roomId: "042" })).reason, "wrong_room");
  assert.equal((await verify(token, { keys: [KEY], now: NOW, roomId: 43 })).reason, "wrong_room");
});

test("a token minted by another key verifies only while that key is listed", async () => {
  const token = await mint(7, NOW + 60, "rotated-key-2026");
  assert.equal((await verify(token, { keys: [KEY], now: NOW, roomId: 7 })).reason, "bad_signature");
  assert.equal((await verify(token, { keys: [KEY, "rotated-key-2026"], now: NOW, roomId: 7 })).ok, true);
  assert.equal((await verify(token, { keys: ["rotated-key-2026", KEY], now: NOW, roomId: 7 })).ok, true);
});

test("changing any single character of a token is refused", async () => {
  const token = await mint(42, NOW + 60, KEY);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  let checked = 0;
  for (let i = 0; i < token.length; i++) {
    // Two replacements per position: the next symbol, and one flipping the lowest bit, which
    // is where a decoder that tolerated trailing bits would let a change through.
    const at = alphabet.indexOf(token[i]);
    for (const c of new Set([alphabet[(at + 1) % 64], alphabet[at ^ 1]])) {
      const changed = token.slice(0, i) + c + token.slice(i + 1);
      const verdict = await verify(changed, { keys: [KEY], now: NOW, roomId: 42 });
      assert.equal(verdict.ok, false, `position ${i}: ${changed}`);
      checked++;
    }
  }
  assert.ok(checked >= token.length);
});

test("either alphabet, padded or not, is one token; other spellings are malformed", async () => {
  const check = async (t, room) => verify(t, { keys: [KEY], now: NOW, roomId: room });
  const ok = async (t, room) => (await check(t, room)).ok;
  const reason = async (t, room) => (await check(t, room)).reason;
  // Room 123's payload is 79 bytes: two symbols in the last quad, so two `=` when padded.
  const two = await mint(123, NOW + 60, KEY);
  assert.equal(two.length % 4, 2);
  assert.equal(await ok(`${two}==`, 123), true, "padded");
  assert.equal(await ok(`${two}=`, 123), true, "short padding, as the Rust decoder allows");
  assert.equal(await reason(`${two}===`, 123), "malformed", "padding past the quad");
  assert.equal(await reason(`${two.slice(0, 8)}=${two.slice(8)}`, 123), "malformed", "padding inside");
  const whole = await mint(42, NOW + 60, KEY); // 78 bytes: whole quads only
  assert.equal(whole.length % 4, 0);
  assert.equal(await reason(`${whole}=`, 42), "malformed", "padding after a whole quad");
  assert.equal(await reason(`${whole.slice(0, -1)}`, 42), "malformed", "one symbol short");
  assert.equal(await reason(`${whole} `, 42), "malformed", "whitespace");

  // A v1 payload is digits, `|` and hex, whose base64 never uses symbols 62 and 63, so a
  // valid token reads the same in both alphabets; PHP's padded base64_encode output is the
  // case that matters, and it is the padded form above.
  assert.equal(Buffer.from(two, "base64url").toString("base64"), `${two}==`);

  assert.equal(await reason("A".repeat(MAX_TOKEN_LEN + 4), 42), "malformed", "too long");
  assert.equal(await reason(null, 42), "missing");
  assert.equal(await reason(undefined, 42), "missing");
  assert.equal(await reason("", 42), "malformed");
});

test("non-zero trailing bits give a second spelling, which is refused", async () => {
  const odd = await mint(4, NOW + 60, KEY);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const last = alphabet.indexOf(odd.at(-1));
  // With 2 or 3 symbols in the last quad, the lowest 4 or 2 bits of the last symbol are unused.
  const unused = odd.length % 4 === 2 ? 0b1111 : 0b11;
  assert.equal(last & unused, 0);
  const respelled = odd.slice(0, -1) + alphabet[last | 1];
  assert.equal(
    Buffer.from(respelled, "base64url").toString(),
    Buffer.from(odd, "base64url").toString(),
    "a lenient decoder reads the same payload",
  );
  assert.equal((await verify(respelled, { keys: [KEY], now: NOW, roomId: 4 })).reason, "malformed");
});

test("configuration mistakes throw instead of refusing or accepting", async () => {
  const token = await mint(42, NOW + 60, KEY);
  await assert.rejects(verify(token, { keys: [], now: NOW, roomId: 42 }), TypeError);
  await assert.rejects(verify(token, { keys: [""], now: NOW, roomId: 42 }), TypeError);
  await assert.rejects(verify(token, { keys: [KEY], now: -1, roomId: 42 }), TypeError);
  await assert.rejects(mint(42, NOW, ""), TypeError);
});
