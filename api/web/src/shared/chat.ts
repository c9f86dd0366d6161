// A room's chat over /ws (docs/chat.md): the log in offset order with deletes and clears
// applied, presence counts, sending with acknowledgements, and reconnecting with `since` so
// that nothing is missed or shown twice.

import { get } from "./api";

export interface ChatUser {
  id: number;
  name: string;
  role: string;
}

export interface ChatLine {
  /** The frame's place in the room's log; absent for older history read over REST. */
  offset?: number;
  id: string;
  type: "chat" | "gift" | "system" | "live" | "offline";
  user?: ChatUser;
  text?: string;
  at: number;
}

interface RoomFrame {
  type: string;
  id: string;
  room: number;
  at: number;
  offset: number;
  epoch: string;
  user?: ChatUser;
  text?: string;
  target?: number;
}

export type ChatStatus =
  | { kind: "connecting" }
  | { kind: "open"; canSend: boolean; user: ChatUser | null }
  | { kind: "closed"; reason: string; final: boolean };

export interface ChatView {
  lines: ChatLine[];
  status: ChatStatus;
  online: number | null;
}

/** Which token opens the socket: a user's JWT (read and send) or a play token (read). */
export type TokenSource = () => Promise<string | null>;

/** Close codes after which reconnecting cannot help. */
const FINAL_CLOSES: Record<number, string> = {
  1003: "the client sent a frame the server does not accept",
  1009: "the client sent a frame that is too large",
  4003: "you are banned from this room's chat",
  4004: "the room was disabled",
  4029: "too many refused messages in a row",
};
const MAX_LINES = 500;
const MAX_PAUSE_MS = 15_000;

interface Pending {
  resolve(): void;
  reject(error: Error): void;
}

/** One room's chat connection and what it has seen. */
export class ChatClient {
  private socket: WebSocket | null = null;
  private lines: ChatLine[] = [];
  private position: { offset: number; epoch: string } | null = null;
  private status: ChatStatus = { kind: "connecting" };
  private online: number | null = null;
  private stopped = false;
  private pause = 500;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pending = new Map<string, Pending>();
  private nextRef = 1;
  /** Bumped by every (re)start: a connect that finds it changed gives up. */
  private generation = 0;

  constructor(
    private readonly room: number,
    private token: TokenSource,
    private readonly onChange: (view: ChatView) => void,
  ) {}

  /** Opens the connection (and keeps it open until `stop`). */
  start(): void {
    this.stopped = false;
    this.restart();
  }

  /** Closes for good. */
  stop(): void {
    this.stopped = true;
    this.generation += 1;
    if (this.timer) clearTimeout(this.timer);
    this.discard();
    this.failPending("the chat connection closed");
  }

  /** Reconnects at once with another token source (after logging in or out). */
  switchToken(token: TokenSource): void {
    this.token = token;
    this.stopped = false;
    this.restart();
  }

  private restart(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.discard();
    this.generation += 1;
    void this.connect(this.generation);
  }

  /** Lets go of the current socket; one still connecting is closed once open (closing it
   * before that makes the browser report a failed connection). */
  private discard(): void {
    const socket = this.socket;
    this.socket = null;
    if (!socket) return;
    socket.onmessage = null;
    socket.onclose = null;
    if (socket.readyState === WebSocket.CONNECTING) socket.onopen = () => socket.close(1000);
    else socket.close(1000);
  }

  /** Sends a message; resolves when the server has put it in the log. */
  send(text: string): Promise<void> {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("chat is not connected"));
    }
    const ref = `m${this.nextRef++}`;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      socket.send(JSON.stringify({ type: "chat", text, ref }));
    });
  }

  private emit(): void {
    this.onChange({ lines: [...this.lines], status: this.status, online: this.online });
  }

  private async connect(generation: number): Promise<void> {
    if (this.stopped || generation !== this.generation) return;
    this.status = { kind: "connecting" };
    this.emit();
    let token: string | null;
    try {
      token = await this.token();
    } catch (error) {
      this.retry(error instanceof Error ? error.message : "no token");
      return;
    }
    if (this.stopped || generation !== this.generation) return;
    if (!token) {
      this.status = { kind: "closed", reason: "chat is not available for this room", final: true };
      this.emit();
      return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const since = this.position ? `${this.position.offset}:${this.position.epoch}` : "0:";
    const url = `${scheme}//${location.host}/ws?room=${this.room}&token=${encodeURIComponent(token)}&since=${encodeURIComponent(since)}`;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onmessage = (event) => {
      if (this.socket === socket && typeof event.data === "string") this.frame(event.data);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.failPending("the chat connection closed");
      const final = FINAL_CLOSES[event.code];
      if (final) {
        this.status = { kind: "closed", reason: final, final: true };
        this.emit();
        return;
      }
      this.retry(event.code === 4001 ? "the token expired; reconnecting" : "reconnecting");
    };
  }

  private retry(reason: string): void {
    if (this.stopped) return;
    this.status = { kind: "closed", reason, final: false };
    this.emit();
    const generation = this.generation;
    this.timer = setTimeout(() => void this.connect(generation), this.pause);
    this.pause = Math.min(this.pause * 2, MAX_PAUSE_MS);
  }

  private failPending(message: string): void {
    for (const pending of this.pending.values()) pending.reject(new Error(message));
    this.pending.clear();
  }

  private frame(text: string): void {
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    switch (frame.type) {
      case "welcome":
        this.welcome(frame);
        return;
      case "presence":
        if (typeof frame.count === "number") this.online = frame.count;
        this.emit();
        return;
      case "ack": {
        const ref = typeof frame.ref === "string" ? frame.ref : "";
        this.pending.get(ref)?.resolve();
        this.pending.delete(ref);
        return;
      }
      case "error": {
        const ref = typeof frame.ref === "string" ? frame.ref : "";
        const message = typeof frame.message === "string" ? frame.message : String(frame.code);
        this.pending.get(ref)?.reject(new Error(message));
        this.pending.delete(ref);
        return;
      }
      default:
        if (typeof frame.offset === "number") this.roomFrame(frame as unknown as RoomFrame);
    }
  }

  private welcome(frame: Record<string, unknown>): void {
    this.pause = 500;
    const position = frame.position as { offset: number; epoch: string } | undefined;
    const firstJoin = this.position === null;
    // A recovered join replays the missed frames right after this one: they move the position.
    if (position && frame.recovered !== true) this.position = position;
    this.status = {
      kind: "open",
      canSend: frame.can_send === true,
      user: (frame.user as ChatUser | undefined) ?? null,
    };
    this.emit();
    // Nothing could be replayed on a first join: what the log no longer holds comes from the
    // stored history (read-only lines, without offsets).
    if (firstJoin && frame.recovered === false) void this.loadStored();
  }

  private async loadStored(): Promise<void> {
    try {
      const page = await get<{ messages: { id: number; type: string; user_id: number; text: string; at: number }[] }>(
        `/rooms/${this.room}/messages?limit=50`,
      );
      const older: ChatLine[] = page.messages
        .reverse()
        .map((m) => ({ id: `stored-${m.id}`, type: m.type === "gift" ? "gift" : "chat", text: m.text, at: m.at, user: { id: m.user_id, name: `user ${m.user_id}`, role: "viewer" } }));
      this.lines = [...older, ...this.lines].slice(-MAX_LINES);
      this.emit();
    } catch {
      // Older history is a courtesy; the live chat works without it.
    }
  }

  private roomFrame(frame: RoomFrame): void {
    if (this.position && frame.epoch === this.position.epoch && frame.offset <= this.position.offset) {
      return;
    }
    this.position = { offset: frame.offset, epoch: frame.epoch };
    switch (frame.type) {
      case "delete":
        this.lines = this.lines.filter((line) => line.offset !== frame.target);
        break;
      case "clear":
        this.lines = this.lines.filter((line) => line.offset !== undefined && line.offset > frame.offset);
        break;
      case "chat":
      case "gift":
      case "system":
      case "live":
      case "offline": {
        const line: ChatLine = { offset: frame.offset, id: frame.id, type: frame.type, at: frame.at };
        if (frame.user) line.user = frame.user;
        if (frame.text !== undefined) line.text = frame.text;
        this.lines = [...this.lines, line].slice(-MAX_LINES);
        break;
      }
      default:
        return;
    }
    this.emit();
  }
}
