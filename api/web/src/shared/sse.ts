// A server-sent event stream read with fetch and a stream reader rather than EventSource, so
// that the access token travels in the Authorization header, never in a URL. Reconnects with
// a growing pause until stopped; a refused token is refreshed once per attempt.

import { accessToken, errorOf } from "./session";

export interface SseEvent {
  event: string;
  data: string;
}

export type FeedState = "connecting" | "open" | "retrying" | "stopped";

export interface FeedHandlers {
  onEvent(event: SseEvent): void;
  onState(state: FeedState, detail?: string): void;
}

/** Splits a text/event-stream body into events (the WHATWG rules that matter here). */
export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];

  /** Feeds a chunk; returns the events it completed. */
  push(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const done: SseEvent[] = [];
    let newline: number;
    while ((newline = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, newline);
      const width = this.buffer.startsWith("\r\n", newline) ? 2 : 1;
      this.buffer = this.buffer.slice(newline + width);
      if (line === "") {
        if (this.data.length > 0) done.push({ event: this.event || "message", data: this.data.join("\n") });
        this.event = "";
        this.data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") this.event = value;
      else if (field === "data") this.data.push(value);
    }
    return done;
  }
}

const MAX_PAUSE_MS = 10_000;

/** Follows the event stream at `path` (under /api/v1) until `signal` aborts. */
export async function follow(path: string, handlers: FeedHandlers, signal: AbortSignal): Promise<void> {
  let pause = 500;
  while (!signal.aborted) {
    handlers.onState("connecting");
    try {
      let token = await accessToken();
      let response = await open(path, token, signal);
      if (response.status === 401 && token) {
        token = await accessToken(true);
        response = await open(path, token, signal);
      }
      if (!response.ok || !response.body) {
        const error = await errorOf(response);
        if (response.status === 401 || response.status === 403) {
          handlers.onState("stopped", error.message);
          return;
        }
        throw error;
      }
      handlers.onState("open");
      pause = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const event of parser.push(value)) handlers.onEvent(event);
      }
    } catch (error) {
      if (signal.aborted) break;
      handlers.onState("retrying", error instanceof Error ? error.message : String(error));
    }
    if (signal.aborted) break;
    handlers.onState("retrying");
    await sleep(pause, signal);
    pause = Math.min(pause * 2, MAX_PAUSE_MS);
  }
  handlers.onState("stopped");
}

function open(path: string, token: string | null, signal: AbortSignal): Promise<Response> {
  const headers: Record<string, string> = { Accept: "text/event-stream" };
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(`/api/v1${path}`, { headers, signal, cache: "no-store" });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
