import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { test } from "node:test";

import { mint } from "../play-token-v1.mjs";
import worker, { decodePath, handle, route, stripParam, tokenFromQuery } from "../worker.mjs";

// Debian 12's Node 18 has WebCrypto only as node:crypto's export; Node >= 20 and the edge
// runtimes have the global the module uses.
globalThis.crypto ??= webcrypto;

const KEY = "cdn-test-key";
const SECRET = "a-shared-secret-of-some-length";
const ENV = {
  LIVEGATE_ORIGIN: "https://livegate.internal:8443",
  LIVEGATE_TOKEN_KEYS: `newer-key,${KEY}`,
  LIVEGATE_TOKEN_LEEWAY_S: "0",
  LIVEGATE_CDN_SECRET: SECRET,
  LIVEGATE_ALLOWED_ORIGINS: "https://player.example",
};
const future = () => Math.floor(Date.now() / 1000) + 600;

/** A livegate stand-in that records what it was asked and answers `respond(url, init)`. */
function upstream(respond = () => new Response("origin bytes", { status: 200 })) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url: new URL(url), init, headers: new Headers(init.headers) });
    return respond(url, init);
  };
  return { calls, fetch };
}

async function serve(url, { env = ENV, init = {}, origin } = {}) {
  const logs = [];
  const response = await handle(new Request(url, init), env, {
    fetch: origin.fetch,
    log: (entry) => logs.push(entry),
  });
  return { response, logs, body: await response.text() };
}

test("bad tokens get 403 and livegate is never asked", async () => {
  const good = await mint(42, future(), KEY);
  const payload = Buffer.from(good, "base64url").toString();
  const flipped = payload.slice(0, -1) + (payload.at(-1) === "0" ? "1" : "0");
  const forged = Buffer.from(flipped).toString("base64url");
  const cases = [
    ["https://edge.example/live/42.flv", "missing"],
    [`https://edge.example/live/42.flv?token=${forged}`, "bad_signature"],
    [`https://edge.example/live/43.m3u8?token=${good}`, "wrong_room"],
    [`https://edge.example/live/042-1.ts?token=${good}`, "wrong_room"],
    [`https://edge.example/live/42.flv?token=${await mint(42, 1_000_000_000, KEY)}`, "expired"],
    ["https://edge.example/live/42-7.ts?token=!!!", "malformed"],
    [`https://edge.example/live/42.m3u8?token=${await mint(42, future(), "retired-key")}`, "bad_signature"],
  ];
  for (const [url, reason] of cases) {
    const origin = upstream();
    const { response, logs, body } = await serve(url, { origin });
    assert.equal(response.status, 403, url);
    assert.equal(body, "forbidden\n");
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.equal(origin.calls.length, 0, `${url} reached livegate`);
    assert.equal(logs.length, 1);
    assert.equal(logs[0].reason, reason, url);
    assert.ok(!JSON.stringify(logs).includes(good), "no token in the log");
  }
});

test("a good token reaches livegate stripped, with the secret header, and FLV streams through", async () => {
  const token = await mint(42, future(), KEY);
  const flv = new Uint8Array([0x46, 0x4c, 0x56, 1, 5, 0, 0, 0, 9, 0, 0, 0, 0]);
  const origin = upstream(() => new Response(flv, { status: 200, headers: { "content-type": "video/x-flv" } }));
  const { response, body } = await serve(`https://edge.example/live/42.flv?a=1&token=${token}&b=2`, {
    origin,
    init: { headers: { cookie: "session=viewer", authorization: "Bearer x", origin: "https://player.example" } },
  });
  assert.equal(response.status, 200);
  assert.equal(origin.calls.length, 1);
  const [{ url, init, headers }] = origin.calls;
  assert.equal(url.href, "https://livegate.internal:8443/live/42.flv?a=1&b=2");
  assert.ok(!url.href.includes(token));
  assert.equal(headers.get("x-livegate-cdn-secret"), SECRET);
  for (const name of ["cookie", "authorization", "origin"]) assert.equal(headers.get(name), null, name);
  assert.equal(init.cf, undefined, "FLV gets no caching hints");
  assert.equal(init.method, "GET");
  assert.deepEqual(new Uint8Array(Buffer.from(body, "latin1")), flv);
  assert.equal(response.headers.get("access-control-allow-origin"), "https://player.example");
});

test("segments are fetched under a token-free URL Cloudflare may cache", async () => {
  const token = await mint(42, future(), KEY);
  const origin = upstream(
    () =>
      new Response("ts", {
        headers: { "cache-control": "public, max-age=86400", "access-control-allow-origin": "*" },
      }),
  );
  // A percent-encoded token value and an encoded parameter name are still the token.
  const encoded = `${token}`.replace(/./, (c) => `%${c.charCodeAt(0).toString(16)}`);
  const { response } = await serve(`https://edge.example/live/42-7.ts?%74oken=${encoded}&hls_ctx=z`, { origin });
  assert.equal(response.status, 200);
  const [{ url, init }] = origin.calls;
  assert.equal(url.pathname + url.search, "/live/42-7.ts?hls_ctx=z");
  assert.equal(init.cf.cacheEverything, true);
  assert.equal(response.headers.get("cache-control"), "public, max-age=86400");
  assert.equal(response.headers.get("access-control-allow-origin"), null, "livegate's CORS dropped");
});

test("playlists carry the viewer's token on every same-host URI, foreign hosts untouched", async () => {
  const token = await mint(42, future(), KEY);
  const playlist = [
    "#EXTM3U",
    "#EXT-X-VERSION:7",
    '#EXT-X-MAP:URI="42-init.mp4"',
    '#EXT-X-KEY:METHOD=AES-128,URI="https://keys.other.example/k42"',
    "#EXTINF:2.000,",
    "42-3.m4s",
    "#EXTINF:2.000,",
    "https://edge.example/live/42-4.m4s?hls_ctx=z",
    "#EXTINF:2.000,",
    "https://cdn.other.example/live/42-5.m4s",
    '#EXT-X-PART:DURATION=0.5,URI="42-6.0.m4s"',
    '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="42-6.1.m4s"',
    '#EXT-X-RENDITION-REPORT:URI="43.m3u8",LAST-MSN=5',
    "",
  ].join("\n");
  const origin = upstream(
    () =>
      new Response(playlist, {
        headers: {
          "content-type": "application/vnd.apple.mpegurl",
          "cache-control": "public, max-age=1",
          "content-length": String(playlist.length),
          etag: '"shared"',
        },
      }),
  );
  const { response, body } = await serve(`https://edge.example/live/42.m3u8?token=${token}`, { origin });
  assert.equal(response.status, 200);
  assert.equal(origin.calls[0].url.search, "");
  assert.equal(origin.calls[0].init.cf.cacheEverything, true);
  const t = `token=${token}`;
  assert.equal(
    body,
    [
      "#EXTM3U",
      "#EXT-X-VERSION:7",
      `#EXT-X-MAP:URI="42-init.mp4?${t}"`,
      '#EXT-X-KEY:METHOD=AES-128,URI="https://keys.other.example/k42"',
      "#EXTINF:2.000,",
      `42-3.m4s?${t}`,
      "#EXTINF:2.000,",
      `https://edge.example/live/42-4.m4s?hls_ctx=z&${t}`,
      "#EXTINF:2.000,",
      "https://cdn.other.example/live/42-5.m4s",
      `#EXT-X-PART:DURATION=0.5,URI="42-6.0.m4s?${t}"`,
      `#EXT-X-PRELOAD-HINT:TYPE=PART,URI="42-6.1.m4s?${t}"`,
      `#EXT-X-RENDITION-REPORT:URI="43.m3u8?${t}",LAST-MSN=5`,
      "",
    ].join("\n"),
  );
  assert.equal(response.headers.get("cache-control"), "private, no-store");
  assert.equal(response.headers.get("content-length"), null);
  assert.equal(response.headers.get("etag"), null);
  assert.equal(response.headers.get("content-type"), "application/vnd.apple.mpegurl");
});

test("variant playlists route to their room and redirects gain the token", async () => {
  const token = await mint(42, future(), KEY);
  const origin = upstream(() => new Response(null, { status: 302, headers: { location: "/live/42-hi.m3u8?hls_ctx=q" } }));
  const { response } = await serve(`https://edge.example/live/42-hi.m3u8?token=${token}`, { origin });
  assert.equal(response.status, 302);
  assert.equal(origin.calls[0].init.redirect, "manual");
  assert.equal(response.headers.get("location"), `/live/42-hi.m3u8?hls_ctx=q&token=${token}`);
});

test("HEAD of a playlist has no body and no stale length", async () => {
  const token = await mint(42, future(), KEY);
  const origin = upstream(() => new Response(null, { headers: { "content-length": "120" } }));
  const { response, body } = await serve(`https://edge.example/live/42.m3u8?token=${token}`, {
    origin,
    init: { method: "HEAD" },
  });
  assert.equal(response.status, 200);
  assert.equal(origin.calls[0].init.method, "HEAD");
  assert.equal(body, "");
  assert.equal(response.headers.get("content-length"), null);
});

test("methods, preflights, unsafe paths and misconfiguration never reach livegate", async () => {
  const token = await mint(42, future(), KEY);
  const cases = [
    [{ url: `https://edge.example/live/42.flv?token=${token}`, init: { method: "POST", body: "x" } }, 405],
    [{ url: "https://edge.example/live/42.flv", init: { method: "OPTIONS", headers: { origin: "https://evil.example" } } }, 403],
    [{ url: `https://edge.example/live/4%2f2.flv?token=${token}` }, 400],
    [{ url: `https://edge.example/live/42%00.flv?token=${token}` }, 400],
    [{ url: `https://edge.example/live/42.mkv?token=${token}` }, 404],
    [{ url: `https://edge.example/live/42.flv?token=${token}`, env: { ...ENV, LIVEGATE_TOKEN_KEYS: "" } }, 500],
    [{ url: `https://edge.example/live/42.flv?token=${token}`, env: { ...ENV, LIVEGATE_CDN_SECRET: "short" } }, 500],
    [{ url: `https://edge.example/live/42.flv?token=${token}`, env: { ...ENV, LIVEGATE_ORIGIN: "not a url" } }, 500],
    [{ url: `https://edge.example/live/42.flv?token=${token}`, env: { ...ENV, LIVEGATE_TOKEN_LEEWAY_S: "-5" } }, 500],
  ];
  for (const [{ url, init, env }, status] of cases) {
    const origin = upstream();
    const { response } = await serve(url, { init, env, origin });
    assert.equal(response.status, status, `${init?.method ?? "GET"} ${url}`);
    assert.equal(origin.calls.length, 0);
  }
  const origin = upstream();
  const { response } = await serve("https://edge.example/live/42.flv", {
    origin,
    init: {
      method: "OPTIONS",
      headers: { origin: "https://player.example", "access-control-request-headers": "range" },
    },
  });
  assert.equal(response.status, 204);
  assert.equal(response.headers.get("access-control-allow-origin"), "https://player.example");
  assert.equal(response.headers.get("access-control-allow-headers"), "range");
  assert.equal(origin.calls.length, 0);
});

test("an encoded digit in the path names the room livegate will decode", async () => {
  const token = await mint(42, future(), KEY);
  const origin = upstream();
  const { response } = await serve(`https://edge.example/live/4%32.flv?token=${token}`, { origin });
  assert.equal(response.status, 200);
  assert.equal(origin.calls[0].url.pathname, "/live/4%32.flv");
});

test("livegate unreachable is a 502 without detail", async () => {
  const token = await mint(42, future(), KEY);
  const origin = {
    fetch: async () => {
      throw new TypeError("connect ECONNREFUSED");
    },
  };
  const { response, body, logs } = await serve(`https://edge.example/live/42-1.ts?token=${token}`, { origin });
  assert.equal(response.status, 502);
  assert.equal(body, "bad gateway\n");
  assert.equal(logs[0].event, "livegate unreachable");
});

test("the default export is a module Worker", () => {
  assert.equal(typeof worker.fetch, "function");
});

test("query, path and route parsing agree with livegate on queries, paths and routes", () => {
  assert.equal(tokenFromQuery("a=1&token=x%2By&token=z"), "x+y");
  assert.equal(tokenFromQuery("a=1&token=x+y"), "x+y", "a literal + stays a +");
  assert.equal(tokenFromQuery("%74oken=abc"), "abc");
  assert.equal(tokenFromQuery("tokenx=1"), null);
  assert.equal(tokenFromQuery("token=%FF"), null, "not UTF-8");
  assert.equal(tokenFromQuery("token"), "");
  assert.equal(stripParam("hls_ctx=ab&token=x&b=2"), "hls_ctx=ab&b=2");
  assert.equal(stripParam("token=x&token=y"), "");
  assert.equal(stripParam("%74oken=x&a=1"), "a=1");
  assert.equal(stripParam("tokenx=1"), "tokenx=1");
  assert.equal(decodePath("/live/4%32.flv"), "/live/42.flv");
  for (const bad of ["/live/%2e%2e/x.flv", "/live/..%2fx.flv", "/live/%zz.flv", "/live/%252e.flv", "/live/./42.flv", "/live\\42.flv"]) {
    assert.equal(decodePath(bad), null, bad);
  }
  assert.deepEqual(route("/live/42-7.ts"), { kind: "segment", stream: "42" });
  assert.deepEqual(route("/live/42-hi.m3u8"), { kind: "playlist", stream: "42" });
  assert.deepEqual(route("/live/abc.m3u8"), { kind: "playlist", stream: "abc" });
  assert.deepEqual(route("/live/42.flv"), { kind: "flv", stream: "42" });
  assert.equal(route("/live/42.mkv"), null);
  assert.equal(route(`/live/${"1".repeat(256)}.flv`), null);
});

test("with the runtime's own fetch, over a real connection", async () => {
  const { createServer } = await import("node:http");
  const seen = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url, secret: req.headers["x-livegate-cdn-secret"] });
    res.writeHead(200, { "content-type": "application/vnd.apple.mpegurl", "cache-control": "public, max-age=1" });
    res.end("#EXTM3U\n#EXTINF:2,\n42-1.ts\n");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const token = await mint(42, future(), KEY);
    const env = { ...ENV, LIVEGATE_ORIGIN: `http://127.0.0.1:${server.address().port}` };
    const response = await handle(new Request(`https://edge.example/live/42.m3u8?token=${token}`), env);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), `#EXTM3U\n#EXTINF:2,\n42-1.ts?token=${token}\n`);
    assert.deepEqual(seen, [{ url: "/live/42.m3u8", secret: SECRET }]);
  } finally {
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
  }
});
