import assert from "node:assert/strict";
import { test } from "node:test";

import { isServedHere, rewrite, tokenParam, withToken } from "../playlist.mjs";

// The same cases as livegate-proxy's own rewriter, so both edges hand players the same URIs.
const TOKEN = "NDJ8MTg5Mz+/Q==";
const T = "token=NDJ8MTg5Mz%2B%2FQ%3D%3D";
const rw = (input, hosts = []) => rewrite(input, tokenParam("token", TOKEN, hosts));

test("media playlist segments get the token, other parameters kept", () => {
  const input =
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n42-3.ts\n#EXTINF:2.000,\n42-4.ts?hls_ctx=ab12\n";
  assert.equal(
    rw(input),
    `#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n42-3.ts?${T}\n#EXTINF:2.000,\n42-4.ts?hls_ctx=ab12&${T}\n`,
  );
});

test("master playlist variants and renditions, CRLF kept", () => {
  const input =
    '#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",URI="audio/42.m3u8"\r\n#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS="avc1.4d401f,mp4a.40.2",AUDIO="aud"\r\n/live/42.m3u8?hls_ctx=x1\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI="42-iframes.m3u8"\r\n';
  assert.equal(
    rw(input),
    `#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",URI="audio/42.m3u8?${T}"\r\n#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS="avc1.4d401f,mp4a.40.2",AUDIO="aud"\r\n/live/42.m3u8?hls_ctx=x1&${T}\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI="42-iframes.m3u8?${T}"\r\n`,
  );
});

test("every tag with a URI attribute is rewritten once", () => {
  for (const line of [
    '#EXT-X-KEY:METHOD=AES-128,URI="key.bin",IV=0x1',
    '#EXT-X-SESSION-KEY:METHOD=AES-128,URI="/keys/k1"',
    '#EXT-X-MAP:URI="42-init.mp4",BYTERANGE="720@0"',
    '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="s",NAME="en",URI="subs/42.m3u8"',
    '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI="42-iframes.m3u8"',
    '#EXT-X-PART:DURATION=0.33334,URI="42-7.0.m4s",INDEPENDENT=YES',
    '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="42-7.1.m4s"',
    '#EXT-X-RENDITION-REPORT:URI="../alt/42.m3u8",LAST-MSN=7,LAST-PART=0',
    '#EXT-X-SESSION-DATA:DATA-ID="com.example",URI="data.json"',
  ]) {
    const out = rw(`${line}\n`);
    assert.ok(out.includes(`?${T}"`), `${line} -> ${out}`);
    assert.equal(out.split(T).length - 1, 1, out);
  }
});

test("a key without URI and other names ending in URI are untouched", () => {
  const input =
    '#EXT-X-KEY:METHOD=NONE\n#EXT-X-CONTENT-STEERING:SERVER-URI="https://steer.example/x"\n#EXT-X-DATERANGE:ID="a",X-URI="keep"\n';
  assert.equal(rw(input), input);
});

test("quoted commas do not split attributes", () => {
  const out = rw('#EXT-X-MEDIA:TYPE=SUBTITLES,NAME="a,URI=x",URI="subs.m3u8"\n');
  assert.ok(out.includes(`URI="subs.m3u8?${T}"`), out);
  assert.equal(out.split(T).length - 1, 1);
});

test("other hosts and schemes keep no token", () => {
  const input =
    'https://cdn.other.example/live/42-1.ts\n//cdn.other.example/42-2.ts\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://key42"\n#EXT-X-KEY:METHOD=AES-128,URI="data:text/plain;base64,AAAA"\n#EXT-X-MAP:URI="https://cdn.other.example/init.mp4"\n';
  assert.equal(rw(input, ["edge.example"]), input);
});

test("backslash and whitespace authorities are the other hosts browsers take them for", () => {
  for (const uri of [
    "/\\evil.example/x.ts",
    "\\\\evil.example/x.ts",
    "\\/evil.example/x.ts",
    "//evil.example/x.ts",
    "/\t/evil.example/x.ts",
    "\t//evil.example/x.ts",
    " //evil.example/x.ts",
    "http:\\\\evil.example/x.ts",
    "https:/\\evil.example/x.ts",
    "http://edge.example.evil.example/x.ts",
  ]) {
    assert.equal(isServedHere(uri, new Set(["edge.example"])), false, JSON.stringify(uri));
  }
  for (const uri of ["42-1.ts", "/live/42-1.ts", "a/b:c.ts", "http://edge.example/live/42-1.ts"]) {
    assert.ok(rw(`${uri}\n`, ["edge.example"]).includes("token="), uri);
  }
});

test("absolute URIs naming this edge are rewritten, port included", () => {
  assert.equal(
    rw("http://EDGE.example:8080/live/42-1.ts\n", ["edge.example:8080"]),
    `http://EDGE.example:8080/live/42-1.ts?${T}\n`,
  );
  assert.equal(rw("http://edge.example:8080/live/42-1.ts\n", ["edge.example"]), "http://edge.example:8080/live/42-1.ts\n");
});

test("an existing token is replaced, not duplicated, and the fragment kept", () => {
  assert.equal(rw("42-1.ts?token=old&hls_ctx=z#frag\n"), `42-1.ts?hls_ctx=z&${T}#frag\n`);
  assert.equal(withToken("/live/42.m3u8?token=a&token=b", tokenParam("token", "x", [])), "/live/42.m3u8?token=x");
});

test("blank lines, tags and a missing final newline are kept", () => {
  assert.equal(rw("#EXTM3U\n\n#EXTINF:2,\n42-1.ts"), `#EXTM3U\n\n#EXTINF:2,\n42-1.ts?${T}`);
  assert.equal(rw("  42-1.ts  \n"), `  42-1.ts?${T}  \n`);
});

test("URL-safe tokens need no encoding", () => {
  assert.equal(rewrite("a.ts\n", tokenParam("token", "NDJ8MTg5-_", [])), "a.ts?token=NDJ8MTg5-_\n");
});
