// The public watch page: the room's title and live state, the player (HLS or HTTP-FLV, the
// viewer's choice) on a play token that is renewed before it runs out, and the chat beside
// it: read-only with the play token, writable after logging in. Gifts are announced as they
// arrive.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { get } from "../shared/api";
import { ChatClient, type ChatLine, type ChatView } from "../shared/chat";
import { clock } from "../shared/format";
import { accessToken, currentUser, logIn, logOut, onSessionChange, type User } from "../shared/session";
import type { PlayToken, Room } from "../shared/types";
import { Player, type Format } from "./player";

/** Renew this long before the token expires (or at 80 % of a short lifetime). */
const RENEW_MARGIN_S = 60;
const TOKEN_PARAM = "token";

function renewDelayMs(token: PlayToken): number {
  const lifetime = token.expires_in;
  const ahead = Math.min(RENEW_MARGIN_S, lifetime * 0.2);
  return Math.max(5, lifetime - ahead) * 1000;
}

function useRoom(id: number) {
  const [room, setRoom] = useState<Room | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    get<Room>(`/rooms/${id}`)
      .then((r) => {
        setRoom(r);
        document.title = `${r.title || `Room ${id}`} · livegate`;
      })
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)));
  }, [id]);
  return { room, setRoom, error };
}

/** The current play token, fetched now and renewed ahead of its expiry. */
function usePlayToken(room: Room | null, user: User | null) {
  const [token, setToken] = useState<PlayToken | null>(null);
  const [error, setError] = useState<string | null>(null);
  const latest = useRef<PlayToken | null>(null);
  const fetchToken = useMemo(
    () => async () => {
      if (!room) return null;
      const next = await get<PlayToken>(`/rooms/${room.id}/play-token`);
      latest.current = next;
      setToken(next);
      setError(null);
      return next;
    },
    [room?.id, user?.id],
  );
  useEffect(() => {
    if (!room || room.disabled) return;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let stopped = false;
    const round = async () => {
      try {
        const next = await fetchToken();
        if (!stopped && next) timer = setTimeout(round, renewDelayMs(next));
      } catch (err) {
        setError(err instanceof Error ? err.message : String(err));
        if (!stopped) timer = setTimeout(round, 15_000);
      }
    };
    void round();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [fetchToken]);
  return { token, error, latest, fetchToken };
}

function VideoPlayer(props: { live: boolean; cover?: string | null; token: PlayToken | null; refetch: () => Promise<unknown> }) {
  const video = useRef<HTMLVideoElement>(null);
  const player = useRef<Player | null>(null);
  const hasFlv = props.token?.flv_url != null && Player.supports("flv");
  const [format, setFormat] = useState<Format>("hls");
  const [status, setStatus] = useState("");

  useEffect(() => {
    const element = video.current;
    const token = props.token;
    if (!element || !token) return;
    if (player.current) {
      player.current.renew(token.token, { hls: token.hls_url, flv: token.flv_url });
      return;
    }
    player.current = new Player(
      element,
      { hls: token.hls_url, flv: token.flv_url },
      TOKEN_PARAM,
      (event) => setStatus(event.kind === "playing" ? "" : event.reason),
      async () => {
        await props.refetch();
      },
    );
  }, [props.token]);

  useEffect(() => {
    const current = player.current;
    if (!current) return;
    if (props.live) current.play(format);
    else current.stop();
  }, [props.live, format, player.current]);

  useEffect(() => () => player.current?.stop(), []);

  return (
    <div class="player">
      <video ref={video} controls muted autoplay playsInline poster={props.cover ?? undefined} aria-label="Live video" data-testid="video" />
      {!props.live && <p class="offline-note">The room is offline. The video starts when it goes live.</p>}
      {status && (
        <p class="muted" role="status">
          {status}
        </p>
      )}
      <fieldset class="format">
        <legend>Playback</legend>
        <label>
          <input type="radio" name="format" value="hls" checked={format === "hls"} onChange={() => setFormat("hls")} /> HLS
        </label>
        <label>
          <input type="radio" name="format" value="flv" checked={format === "flv"} disabled={!hasFlv} onChange={() => setFormat("flv")} /> HTTP-FLV
          {!hasFlv && <span class="muted"> (not offered)</span>}
        </label>
      </fieldset>
    </div>
  );
}

function ChatLogin(props: { onDone(): void }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = async (event: Event) => {
    event.preventDefault();
    try {
      await logIn(username.trim(), password);
      props.onDone();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <form class="chat-login" onSubmit={submit} aria-label="Log in to chat">
      <label for="watch-username">Username</label>
      <input id="watch-username" autocomplete="username" required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
      <label for="watch-password">Password</label>
      <input id="watch-password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" class="primary">
        Log in to chat
      </button>
    </form>
  );
}

/** Gifts older than this when they reach the page (replayed history) are not announced. */
const ANNOUNCE_WITHIN_MS = 15_000;

function Chat(props: {
  roomId: number;
  user: User | null;
  playToken(): Promise<PlayToken | null>;
  onLive(live: boolean): void;
  onGift(line: ChatLine): void;
}) {
  const [view, setView] = useState<ChatView>({ lines: [], status: { kind: "connecting" }, online: null });
  const [draft, setDraft] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [loggingIn, setLoggingIn] = useState(false);
  const list = useRef<HTMLDivElement>(null);
  const seen = useRef(new Set<string>());
  // A logged-in user reads and writes with the access token; anyone else reads with the
  // play token of the moment.
  const tokenSource = () => (props.user ? accessToken() : props.playToken().then((t) => t?.token ?? null));
  const client = useMemo(() => new ChatClient(props.roomId, tokenSource, setView), [props.roomId]);

  useEffect(() => {
    client.start();
    return () => client.stop();
  }, [client]);
  const userOnOpen = useRef(props.user?.id);
  useEffect(() => {
    if (userOnOpen.current === props.user?.id) return;
    userOnOpen.current = props.user?.id;
    client.switchToken(tokenSource);
  }, [props.user?.id]);
  useEffect(() => {
    const element = list.current;
    if (element) element.scrollTop = element.scrollHeight;
    for (const line of view.lines) {
      if (seen.current.has(line.id)) continue;
      seen.current.add(line.id);
      if (line.type === "live") props.onLive(true);
      if (line.type === "offline") props.onLive(false);
      if (line.type === "gift" && Date.now() - line.at < ANNOUNCE_WITHIN_MS) props.onGift(line);
    }
  }, [view.lines]);

  const send = async (event: Event) => {
    event.preventDefault();
    const text = draft.trim();
    if (!text) return;
    try {
      await client.send(text);
      setDraft("");
      setError(null);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };

  const status = view.status;
  const canSend = status.kind === "open" && status.canSend;
  return (
    <aside class="watch-chat" aria-labelledby="watch-chat-heading">
      <div class="section-head">
        <h2 id="watch-chat-heading">Chat</h2>
        <span class="muted" data-testid="chat-status">
          {status.kind === "open" ? (status.canSend ? "connected" : "read-only") : status.kind === "closed" ? status.reason : "connecting…"}
        </span>
      </div>
      <div class="chat-log" ref={list} role="log" aria-label="Chat messages" tabIndex={0} data-testid="chat-log">
        <ol class="plain">
        {view.lines.length === 0 && <li class="muted">No messages yet.</li>}
        {view.lines.map((line) => (
          <li key={line.id} class={`chat-line chat-${line.type}`} data-offset={line.offset}>
            <span class="chat-meta">
              <time dateTime={new Date(line.at).toISOString()}>{clock(line.at)}</time>{" "}
              <strong>{line.user?.name ?? (line.type === "system" ? "notice" : "")}</strong>
            </span>{" "}
            <span class="chat-text">
              {line.type === "gift" && "🎁 "}
              {line.type === "live" ? "The stream started." : line.type === "offline" ? "The stream ended." : line.text}
            </span>
          </li>
        ))}
      </ol>
      </div>
      {props.user ? (
        <form class="chat-send" onSubmit={send}>
          <label for="watch-chat-text" class="visually-hidden">
            Message
          </label>
          <input id="watch-chat-text" value={draft} maxLength={500} placeholder="Say something" disabled={!canSend} onInput={(e) => setDraft(e.currentTarget.value)} />
          <button type="submit" disabled={!canSend}>
            Send
          </button>
        </form>
      ) : loggingIn ? (
        <ChatLogin onDone={() => setLoggingIn(false)} />
      ) : (
        <p>
          <button type="button" onClick={() => setLoggingIn(true)}>
            Log in to chat
          </button>
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {props.user && (
        <p class="muted">
          Chatting as {props.user.username}.{" "}
          <button type="button" class="link" onClick={() => void logOut()}>
            Log out
          </button>
        </p>
      )}
    </aside>
  );
}

export function WatchApp(props: { roomId: number }) {
  const [user, setUser] = useState<User | null>(currentUser());
  useEffect(() => onSessionChange(setUser), []);
  const { room, setRoom, error } = useRoom(props.roomId);
  const play = usePlayToken(room, user);
  const [gift, setGift] = useState<ChatLine | null>(null);

  useEffect(() => {
    if (!gift) return;
    const timer = setTimeout(() => setGift(null), 6000);
    return () => clearTimeout(timer);
  }, [gift]);

  if (error) {
    return (
      <main id="main" class="watch">
        <h1>Room {props.roomId}</h1>
        <p class="error" role="alert">
          {error}
        </p>
      </main>
    );
  }
  if (!room) {
    return (
      <main id="main" class="watch">
        <p class="muted">Loading…</p>
      </main>
    );
  }
  return (
    <main id="main" class="watch">
      <header class="watch-head">
        <h1>{room.title || `Room ${room.id}`}</h1>
        <span class={`badge ${room.is_live ? "badge-live" : ""}`} data-testid="live-state">
          {room.is_live ? "live" : "offline"}
        </span>
      </header>
      <div class="gift-banner" role="status" aria-live="polite">
        {gift && (
          <span>
            🎁 {gift.user?.name ?? "Someone"}: {gift.text}
          </span>
        )}
      </div>
      {play.error && (
        <p class="error" role="alert">
          No play token: {play.error}
        </p>
      )}
      <div class="watch-grid">
        <VideoPlayer live={room.is_live} cover={room.cover_url} token={play.token} refetch={play.fetchToken} />
        <Chat
          roomId={room.id}
          user={user}
          playToken={() => Promise.resolve(play.latest.current ?? play.fetchToken())}
          onLive={(live) => setRoom((current) => current && { ...current, is_live: live })}
          onGift={setGift}
        />
      </div>
    </main>
  );
}
