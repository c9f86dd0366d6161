// The watch page's player: hls.js for HLS, mpegts.js for HTTP-FLV, both fed through the edge
// (the proxy) with a play token. The token is renewed before it expires: HLS requests carry
// whichever token is current (the playlist is reloaded with it, and the proxy writes it into
// every segment URI); an FLV response, checked once when it starts, is reopened with the
// current token whenever it ends.

import Hls from "hls.js/light";
import mpegts from "mpegts.js";

export type Format = "hls" | "flv";

export interface Urls {
  hls: string;
  flv: string | null;
}

export type PlayerEvent = { kind: "playing" } | { kind: "waiting"; reason: string } | { kind: "error"; reason: string };

/** Replaces the `param` query value of `url` with `token`. */
export function withToken(url: string, param: string, token: string): string {
  const parsed = new URL(url, location.href);
  if (!parsed.searchParams.has(param)) return url;
  parsed.searchParams.set(param, token);
  return parsed.toString();
}

const FIRST_PAUSE_MS = 1000;
const MAX_PAUSE_MS = 15_000;

export class Player {
  private hls: Hls | null = null;
  private flv: mpegts.Player | null = null;
  private format: Format | null = null;
  private reopenTimer: ReturnType<typeof setTimeout> | null = null;
  private token: string;
  private pause = FIRST_PAUSE_MS;

  /**
   * `beforeReopen` runs before playback is reopened after an error or the end of a response
   * (the page fetches a fresh token there, since a refused request may mean an old one).
   */
  constructor(
    private readonly video: HTMLVideoElement,
    private urls: Urls,
    private readonly param: string,
    private readonly onEvent: (event: PlayerEvent) => void,
    private readonly beforeReopen: () => Promise<void>,
  ) {
    video.addEventListener("playing", () => {
      this.pause = FIRST_PAUSE_MS;
      this.onEvent({ kind: "playing" });
    });
    this.token = new URL(urls.hls, location.href).searchParams.get(param) ?? "";
  }

  /** What this browser can play. */
  static supports(format: Format): boolean {
    if (format === "hls") return Hls.isSupported() || this.nativeHls();
    return mpegts.getFeatureList().mseLivePlayback;
  }

  private static nativeHls(): boolean {
    return document.createElement("video").canPlayType("application/vnd.apple.mpegurl") !== "";
  }

  /** A fresh token from a renewal; used by the next request. */
  renew(token: string, urls: Urls): void {
    this.token = token;
    this.urls = urls;
  }

  play(format: Format): void {
    this.stop();
    this.format = format;
    if (format === "hls") this.playHls();
    else this.playFlv();
  }

  stop(): void {
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.reopenTimer = null;
    this.hls?.destroy();
    this.hls = null;
    if (this.flv) {
      this.flv.pause();
      this.flv.unload();
      this.flv.detachMediaElement();
      this.flv.destroy();
      this.flv = null;
    }
    this.format = null;
  }

  private current(url: string): string {
    return withToken(url, this.param, this.token);
  }

  private playHls(): void {
    if (!Hls.isSupported()) {
      // Safari plays HLS itself; the token of the moment goes into the playlist URL.
      this.video.src = this.current(this.urls.hls);
      void this.video.play().catch(() => undefined);
      return;
    }
    const hls = new Hls({
      liveDurationInfinity: true,
      lowLatencyMode: false,
      // Every request names the current token, so a renewal takes effect at the next
      // playlist reload without restarting playback.
      xhrSetup: (xhr, url) => {
        xhr.open("GET", this.current(url), true);
      },
    });
    this.hls = hls;
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      this.onEvent({ kind: "error", reason: `${data.type}: ${data.details}` });
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else this.reopenLater();
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      void this.video.play().catch(() => undefined);
    });
    hls.loadSource(this.current(this.urls.hls));
    hls.attachMedia(this.video);
  }

  private playFlv(): void {
    const flvUrl = this.urls.flv;
    if (!flvUrl) {
      this.onEvent({ kind: "error", reason: "this room has no HTTP-FLV stream" });
      return;
    }
    const player = mpegts.createPlayer(
      { type: "flv", isLive: true, url: this.current(flvUrl), hasAudio: true, hasVideo: true },
      { enableWorker: false, lazyLoad: false, liveBufferLatencyChasing: true, autoCleanupSourceBuffer: true },
    );
    this.flv = player;
    player.on(mpegts.Events.ERROR, (type: string, detail: string) => {
      this.onEvent({ kind: "error", reason: `${type}: ${detail}` });
      this.reopenLater();
    });
    player.on(mpegts.Events.LOADING_COMPLETE, () => {
      // The edge ended the response (a token past its time, a revocation, the stream
      // restarting): reopen with the current token.
      this.onEvent({ kind: "waiting", reason: "the stream ended; reconnecting" });
      this.reopenLater();
    });
    player.attachMediaElement(this.video);
    player.load();
    void Promise.resolve(player.play()).catch(() => undefined);
  }

  private reopenLater(): void {
    const format = this.format;
    if (!format || this.reopenTimer) return;
    this.reopenTimer = setTimeout(() => {
      void this.beforeReopen()
        .catch(() => undefined)
        .then(() => {
          this.reopenTimer = null;
          if (this.format === format) this.play(format);
        });
    }, this.pause);
    this.pause = Math.min(this.pause * 2, MAX_PAUSE_MS);
  }
}
