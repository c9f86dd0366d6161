// End to end in a real browser: Debian's Chromium driven headless by playwright-core against a
// running `livegate up` with a real nginx-rtmp origin. livegate/tests/console.rs starts it all
// and answers this script's requests for a publisher (lines `@@ {json}` on stdout, one JSON
// answer per line on stdin), since it owns the ffmpeg process.
//
// Environment: LG_BASE (the API, e.g. http://127.0.0.1:8090), LG_ROOM, LG_STREAM_KEY,
// LG_ADMIN_USER, LG_ADMIN_PASSWORD, LG_SCREENSHOTS (a directory), optionally LG_CHROMIUM
// (default /usr/bin/chromium) and LG_PATIENCE_MS (default 30000).
//
// Fails (exit 1) on any browser console error or uncaught page error.

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env("LG_BASE");
const ROOM = Number(env("LG_ROOM"));
const ADMIN = { username: env("LG_ADMIN_USER"), password: env("LG_ADMIN_PASSWORD") };
const SHOTS = env("LG_SCREENSHOTS");
const CHROMIUM = env("LG_CHROMIUM", "/usr/bin/chromium");
const PATIENCE = Number(env("LG_PATIENCE_MS", "30000"));
/** The requirement: a room appears under Live now within a few seconds of its publish. */
const LIVE_WITHIN_MS = 10_000;
/** The launch flags the CI's Chromium runs with (plus an empty --user-data-dir each). */
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

// ---- the conversation with the Rust test ------------------------------------------------
const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(request) {
  process.stdout.write(`@@ ${JSON.stringify(request)}\n`);
  const { value, done } = await answers.next();
  if (done) throw new Error(`no answer to ${request.ask}`);
  const answer = JSON.parse(value);
  if (!answer.ok) throw new Error(`${request.ask}: ${answer.error}`);
  return answer;
}

const log = (...parts) => console.log("[e2e]", ...parts);
const problems = [];
const profiles = [];

async function browser(name, viewport) {
  const dir = mkdtempSync(join(tmpdir(), `lg-e2e-${name}-`));
  profiles.push(dir);
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport,
  });
  context.setDefaultTimeout(PATIENCE);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`${name} console error: ${message.text()} (${message.location().url})`);
  });
  page.on("pageerror", (error) => problems.push(`${name} page error: ${error.message}`));
  return { context, page };
}

async function shot(page, file, options = {}) {
  await page.screenshot({ path: join(SHOTS, file), fullPage: true, ...options });
  log("screenshot", file);
}

async function api(method, path, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`${BASE}/api/v1${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function until(what, check, limit = PATIENCE) {
  const deadline = Date.now() + limit;
  for (let pause = 50; ; pause = Math.min(pause * 2, 500)) {
    const value = await check().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/** Waits until the edge serves the room's playlist (a player opened earlier gets 404s). */
async function playlistReady() {
  await until("the room's HLS playlist at the edge", async () => {
    const token = await api("GET", `/rooms/${ROOM}/play-token`);
    const response = await fetch(token.hls_url);
    await response.arrayBuffer();
    return response.ok;
  });
}

async function confirmDialog(page, button) {
  const dialog = page.locator("dialog[open]");
  await dialog.waitFor();
  const title = (await dialog.locator("#dialog-title").textContent()) ?? "";
  await dialog.getByRole("button", { name: button, exact: true }).click();
  // The action may open a dialog of its own at once (a new key, shown once): wait for this
  // question to go, not for every dialog.
  await page.locator("dialog[open]", { has: page.locator("#dialog-title", { hasText: title }) }).waitFor({ state: "detached" });
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const admin = await browser("admin", { width: 1360, height: 900 });
  const page = admin.page;

  // ---- log in --------------------------------------------------------------------------
  await page.goto(`${BASE}/console`);
  await page.getByLabel("Username").fill(ADMIN.username);
  await page.getByLabel("Password").fill(ADMIN.password);
  await shot(page, "console-login.png");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Live now" }).waitFor();
  await page.getByTestId("feed-state").filter({ hasText: "Live ·" }).waitFor();
  log("logged in; the live feed is open");

  // ---- a room appears under Live now when ffmpeg starts ----------------------------------
  const row = page.locator(`tr[data-room-id="${ROOM}"]`);
  const published = await ask({ ask: "publish", key: env("LG_STREAM_KEY") });
  await row.waitFor({ timeout: Math.max(PATIENCE, LIVE_WITHIN_MS) });
  const appearedMs = Date.now() - published.started_at;
  log(`room ${ROOM} appeared under Live now ${appearedMs} ms after ffmpeg started`);
  if (appearedMs > LIVE_WITHIN_MS) throw new Error(`the room took ${appearedMs} ms to appear (limit ${LIVE_WITHIN_MS})`);
  // The numbers fill in from the origin as the stream settles; the screenshot waits for them.
  await until("the stream's codecs", async () => !(await row.locator('td[data-label="Media"]').innerText()).includes("—"), 15_000).catch(() =>
    log("no codecs shown yet; taking the screenshot anyway"),
  );
  await shot(page, "console-live.png");

  // ---- kick: the publisher drops ----------------------------------------------------------
  await row.getByRole("button", { name: "Kick", exact: true }).click();
  await confirmDialog(page, "Kick publisher");
  await page.getByTestId("notice").filter({ hasText: "kicked" }).waitFor();
  const gone = await ask({ ask: "publisher-gone" });
  log(`the publisher dropped after the kick (ffmpeg exited: ${gone.status})`);
  await row.waitFor({ state: "detached" });
  log("the room left Live now without a reload");

  // ---- rotate the key: the new publish URL is shown once and works ------------------------
  await page.getByRole("link", { name: "Rooms", exact: true }).click();
  await page.getByRole("link", { name: /Demo room/ }).first().click();
  await page.getByRole("heading", { name: /#/ }).first().waitFor();
  // Escape cancels a destructive action.
  await page.getByRole("button", { name: "Disable", exact: true }).click();
  await page.locator("dialog[open]").waitFor();
  await page.keyboard.press("Escape");
  await page.locator("dialog[open]").waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Rotate key", exact: true }).click();
  await confirmDialog(page, "Rotate key");
  const urlField = page.getByTestId("new-publish-url");
  await urlField.waitFor();
  const publishUrl = await urlField.inputValue();
  await shot(page, "console-rotated-key.png", { fullPage: false });
  await page.locator("dialog[open]").getByRole("button", { name: "Done" }).click();
  const newKey = new URL(publishUrl.replace(/^rtmp:/, "http:")).searchParams.get("key");
  if (!newKey || newKey === env("LG_STREAM_KEY")) throw new Error(`no new key in ${publishUrl}`);
  await ask({ ask: "publish", key: newKey });
  await until("the room to be live with the new key", async () => (await api("GET", `/rooms/${ROOM}`)).is_live);
  log("the new key publishes");
  await page.reload();
  await page.getByTestId("room-state").filter({ hasText: "live" }).waitFor();
  await page.getByTestId("chat-status").filter({ hasText: "connected" }).waitFor();

  // ---- the watch page plays through the proxy with its token ------------------------------
  await playlistReady();
  const viewer = await browser("viewer", { width: 1280, height: 800 });
  const watch = viewer.page;
  await watch.goto(`${BASE}/watch/${ROOM}`);
  const support = await watch.evaluate(() => ({
    h264: MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E"'),
    h264_aac: MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E, mp4a.40.2"'),
    agent: navigator.userAgent,
  }));
  log("MediaSource.isTypeSupported:", JSON.stringify(support));
  if (!support.h264) throw new Error("this Chromium's Media Source cannot play H.264");
  await watch.getByTestId("live-state").filter({ hasText: "live" }).waitFor();
  const video = watch.getByTestId("video");
  const first = await until("the video to play", async () => {
    const t = await video.evaluate((v) => v.currentTime);
    return t > 0.5 ? t : undefined;
  });
  const later = await until("the video's time to advance", async () => {
    const t = await video.evaluate((v) => v.currentTime);
    return t > first + 1 ? t : undefined;
  });
  log(`the video plays: currentTime ${first.toFixed(2)} s, then ${later.toFixed(2)} s`);
  await watch.getByTestId("chat-status").filter({ hasText: "read-only" }).waitFor();
  await shot(watch, "watch.png");

  // ---- a viewer's message, deleted by the admin, vanishes for the viewer ------------------
  const viewerName = `viewer${Date.now() % 1_000_000}`;
  const viewerPassword = "a viewer's password";
  await api("POST", "/users", { username: viewerName, password: viewerPassword });
  await watch.getByRole("button", { name: "Log in to chat" }).click();
  await watch.getByLabel("Username").fill(viewerName);
  await watch.getByLabel("Password").fill(viewerPassword);
  await watch.getByRole("button", { name: "Log in to chat" }).click();
  await watch.getByTestId("chat-status").filter({ hasText: "connected" }).waitFor();
  const text = `hello from ${viewerName}`;
  await watch.getByRole("textbox", { name: "Message" }).fill(text);
  await watch.getByRole("button", { name: "Send" }).click();
  const viewerLine = watch.getByTestId("chat-log").locator(".chat-line", { hasText: text });
  await viewerLine.waitFor();
  const adminLine = page.locator(".chat-line", { hasText: text });
  await adminLine.waitFor();
  await shot(page, "console-room.png");
  await adminLine.getByRole("button", { name: `Delete message from ${viewerName}: ${text}` }).click();
  const dialog = page.locator("dialog[open]");
  await dialog.waitFor();
  const confirmedAt = Date.now();
  await dialog.getByRole("button", { name: "Delete message", exact: true }).click();
  await viewerLine.waitFor({ state: "detached" });
  log(`the deleted message vanished for the viewer ${Date.now() - confirmedAt} ms after the admin confirmed the delete`);
  await adminLine.waitFor({ state: "detached" });

  // ---- phone width ------------------------------------------------------------------------
  await watch.setViewportSize({ width: 390, height: 844 });
  await shot(watch, "watch-phone.png");
  await viewer.context.close();

  // ---- the other pages ----------------------------------------------------------------------
  for (const [link, heading, file] of [
    ["Recordings", "Recordings", "console-recordings.png"],
    ["Orders", "Orders", "console-orders.png"],
    ["Health", "Health", "console-health.png"],
    ["Audit log", "Audit log", "console-audit.png"],
  ]) {
    await page.getByRole("navigation").getByRole("link", { name: link, exact: true }).click();
    await page.getByRole("heading", { level: 1, name: heading }).waitFor();
    await page.waitForLoadState("networkidle").catch(() => undefined);
    if (file === "console-health.png") await page.getByTestId("health-checks").waitFor();
    if (file === "console-audit.png") {
      // Who did what: the kick and the rotation are in the log.
      await page.getByTestId("audit-table").waitFor();
      const audit = (await page.getByTestId("audit-table").innerText()).toLowerCase();
      for (const action of ["kick", "rotate"]) {
        if (!audit.includes(action)) throw new Error(`the audit log shows no ${action}`);
      }
    }
    await shot(page, file);
  }
  await page.getByRole("navigation").getByRole("link", { name: "Live now", exact: true }).click();
  await page.locator(`tr[data-room-id="${ROOM}"]`).waitFor();
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, "console-live-phone.png");
  await admin.context.close();
}

let failed = false;
try {
  await main();
} catch (error) {
  failed = true;
  console.error("[e2e] FAILED:", error instanceof Error ? error.stack ?? error.message : error);
}
for (const problem of problems) console.error("[e2e]", problem);
for (const dir of profiles) rmSync(dir, { recursive: true, force: true });
if (failed || problems.length > 0) {
  console.error(`[e2e] ${failed ? "failed" : `${problems.length} browser console error(s)`}`);
  process.exit(1);
}
log("passed");
process.exit(0);
